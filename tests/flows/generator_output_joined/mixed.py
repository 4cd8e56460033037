from promptflow.core import tool


@tool
def mixed():
    yield 1
    yield 2.5
    yield None
    yield True
    yield "x"
    yield [1, "a"]
    yield {"k": 1}
