from promptflow.core import log_metric, tool

from pfkit.evaluate import percentile_of, report


@tool
def aggregate(checks: list, latencies: list, tokens: list) -> dict:
    """Logs the share of lines within each budget (with Wilson intervals), mean latency and
    tokens, and the 50th and 95th percentile latency."""
    summary = report({"within_latency": [c["within_latency"] for c in checks],
                      "within_tokens": [c["within_tokens"] for c in checks],
                      "latency": latencies, "total_tokens": tokens})
    for q in (50, 95):
        value = percentile_of(latencies, q)
        if value is not None:
            log_metric(f"latency_p{q}", value)
    return summary
