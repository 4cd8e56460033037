from promptflow.core import tool


@tool
def combine(shouted: str, streamed: str) -> dict:
    return {"shouted": shouted, "streamed": streamed, "streamed_type": type(streamed).__name__}
