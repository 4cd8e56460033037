from promptflow.core import tool


@tool
def compose(customer_tier: str, refund: str = None, technical: str = None,
            general: str = None) -> dict:
    """Exactly one branch ran; bypassed branches arrive as their default (None)."""
    chosen = [r for r in (refund, technical, general) if r is not None]
    priority = "high" if customer_tier == "premium" or refund is not None else "normal"
    return {"reply": chosen[0] if chosen else "", "priority": priority}
