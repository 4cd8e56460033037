from promptflow.tracing import trace

@trace
def helper(x):
    return x + 1

@trace
def run(x: int) -> int:
    return helper(x) * 10
