from promptflow.core import tool


@tool
def check(latency: float, total_tokens: int, max_latency: float = 5.0,
          max_tokens: int = 1000) -> dict:
    """1.0 for a line within each budget, 0.0 over it."""
    return {"within_latency": float(latency <= max_latency),
            "within_tokens": float(total_tokens <= max_tokens)}
