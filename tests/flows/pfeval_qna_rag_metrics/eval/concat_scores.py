import math

from promptflow.core import tool


def _score(parsed):
    return parsed["quality_score"] if parsed else math.nan


@tool
def concat_scores(relevance: dict = None, groundedness: dict = None, retrieval: dict = None) -> dict:
    relevance_score = _score(relevance)
    return {
        "gpt_relevance": relevance_score,
        "gpt_relevance_pass_rate": math.nan if math.isnan(relevance_score) else float(relevance_score >= 3),
        "gpt_groundedness": _score(groundedness),
        "gpt_retrieval_score": _score(retrieval),
    }
