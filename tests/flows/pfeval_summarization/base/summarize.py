from promptflow.core import tool


@tool
def summarize(document: str) -> str:
    sentences = [s.strip() for s in document.split(".") if s.strip()]
    if not sentences:
        raise ValueError("nothing to summarize")
    return sentences[0] + "."
