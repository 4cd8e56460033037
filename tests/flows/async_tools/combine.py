from promptflow.core import tool


@tool
def combine(shouted: str, streamed: str) -> dict:
    kind = type(streamed).__name__
    if not isinstance(streamed, str):
        streamed = "<not a str: " + kind + ">"
    return {"shouted": shouted, "streamed": streamed, "streamed_type": kind}
