from promptflow.core import tool


@tool
def greet(name: str, count: int, tags: list, loud: bool) -> dict:
    text = " ".join([f"hello {name}"] * count)
    return {"text": text.upper() if loud else text, "count_type": type(count).__name__, "tags": tags}
