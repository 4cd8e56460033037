import time

from promptflow.core import tool


@tool
def step(value: int, op: str) -> int:
    time.sleep(0.01)
    if op == "inc":
        return value + 1
    if op == "double":
        return value * 2
    return value * value
