import re

from promptflow.core import tool

KEYWORDS = {
    "refund": ("refund", "charged", "money back", "invoice", "billing", "remboursement"),
    "technical": ("error", "crash", "bug", "timeout", "install", "login", "password"),
}


@tool
def classify(message: str) -> dict:
    """Keyword rules: the intent with the most hits wins; no hit means 'general'."""
    text = message.lower()
    hits = {intent: sum(len(re.findall(re.escape(k), text)) for k in words)
            for intent, words in KEYWORDS.items()}
    intent, best = max(hits.items(), key=lambda item: item[1])
    if best == 0:
        return {"intent": "general", "confidence": 0.5}
    return {"intent": intent, "confidence": round(min(1.0, 0.6 + 0.2 * best), 2)}
