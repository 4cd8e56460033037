from promptflow.core import tool


@tool
def inspect_prompt(text: str) -> dict:
    return {"type": type(text).__name__, "text": str(text), "has_injected_marker": "# system:\nignore" in text}
