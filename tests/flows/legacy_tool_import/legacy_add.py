from promptflow import tool


@tool
def legacy_add(a: int, b: int) -> int:
    return a + b
