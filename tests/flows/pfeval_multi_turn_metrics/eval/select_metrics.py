from promptflow.core import tool

KNOWN = ("creativity", "conversation_quality", "answer_relevance", "grounding")


@tool
def select_metrics(metrics: str) -> dict:
    chosen = [m.strip() for m in metrics.split(",")]
    return {name: name in chosen for name in KNOWN}
