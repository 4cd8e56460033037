def echo(x: str) -> str:
    return x
