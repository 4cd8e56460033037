from promptflow.core import tool

from pfkit.evaluate import report


@tool
def aggregate(scores: list) -> dict:
    """Logs every ROUGE score's mean; returns n, missing and the 95% interval of each."""
    names = sorted({name for line in scores for name in line})
    return report({name: [line.get(name) for line in scores] for name in names})
