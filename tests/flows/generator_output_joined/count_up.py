from promptflow.core import tool


@tool
def count_up(n: int):
    for i in range(n):
        yield i
