from promptflow.core import tool


@tool
def combine(double: int, square: str = "<default>") -> dict:
    return {"double": double, "square": square, "square_type": type(square).__name__}
