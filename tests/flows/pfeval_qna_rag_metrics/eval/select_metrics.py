from promptflow.core import tool


@tool
def select_metrics(metrics: str) -> dict:
    names = [m.strip() for m in metrics.split(",")]
    return {m: m in names for m in ("gpt_groundedness", "gpt_relevance", "gpt_retrieval_score")}
