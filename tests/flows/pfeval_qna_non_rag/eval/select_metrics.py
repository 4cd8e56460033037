from promptflow.core import tool

KNOWN = ("f1_score", "ada_similarity", "gpt_groundedness", "gpt_relevance", "gpt_fluency")


@tool
def select_metrics(metrics: str) -> dict:
    wanted = {name.strip() for name in metrics.split(",") if name.strip()}
    return {name: name in wanted for name in KNOWN}
