from promptflow.core import tool


@tool
def show(x, y=None, z=None) -> str:
    return f"x={x!r} y={y!r} z={z!r}"
