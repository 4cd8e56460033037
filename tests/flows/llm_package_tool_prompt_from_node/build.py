from promptflow.core import tool


@tool
def build(name: str) -> str:
    return "# user:\n{{greeting}}, " + name + "!\n"
