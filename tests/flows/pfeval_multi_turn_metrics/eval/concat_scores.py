import math

from promptflow.core import tool


@tool
def concat_scores(creativity: float = None, conversation_quality: float = None,
                  answer_relevance: float = None, grounding: float = None) -> dict:
    given = {"creativity": creativity, "conversation_quality": conversation_quality,
             "answer_relevance": answer_relevance, "grounding": grounding}
    return {name: math.nan if value is None else float(value) for name, value in given.items()}
