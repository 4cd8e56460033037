from collections import Counter

from promptflow.core import log_metric, tool


@tool
def summarize(words: list, levels: list) -> dict:
    """Runs once over all successful lines: words and levels are lists, one item per line."""
    total = sum(words)
    log_metric("lines", len(words))
    log_metric("total_words", total)
    log_metric("mean_words", round(total / len(words), 2) if words else 0.0)
    counts = Counter(levels)
    for level in ("easy", "medium", "hard"):
        log_metric(f"share_{level}", round(counts[level] / len(levels), 2) if levels else 0.0)
    return {"total_words": total, "levels": dict(counts)}
