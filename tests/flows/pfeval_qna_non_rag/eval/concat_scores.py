from promptflow.core import tool


def _number(value):
    return float(value) if isinstance(value, (int, float)) else float("nan")


@tool
def concat_scores(f1_score: float = None, ada_similarity: float = None,
                  gpt_groundedness: float = None, gpt_relevance: float = None,
                  gpt_fluency: float = None) -> dict:
    return {
        "f1_score": _number(f1_score),
        "ada_similarity": _number(ada_similarity),
        "gpt_groundedness": _number(gpt_groundedness),
        "gpt_relevance": _number(gpt_relevance),
        "gpt_fluency": _number(gpt_fluency),
    }
