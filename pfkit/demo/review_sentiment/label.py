from promptflow.core import tool

LABELS = ("positive", "negative")


@tool
def label(reply: str) -> str:
    """The first sentiment word in the model's reply, or "unknown" when it gave none."""
    words = reply.lower().replace(".", " ").replace(",", " ").split()
    for word in words:
        if word in LABELS:
            return word
    return "unknown"
