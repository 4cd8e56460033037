from promptflow.core import tool

from pfkit.evaluate import entity_match


@tool
def score(entities: list, ground_truth: str) -> dict:
    return entity_match(entities, ground_truth)
