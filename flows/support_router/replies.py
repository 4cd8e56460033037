from promptflow.core import tool

TEMPLATES = {
    "refund": "Sorry about the billing problem. We have opened a refund request for: {summary}",
    "technical": "Thanks for the report. Our engineers will look into: {summary}",
    "general": "Thanks for writing to us. We will get back to you about: {summary}",
}


@tool
def reply(kind: str, message: str, confidence: float) -> str:
    summary = message if len(message) <= 60 else message[:57] + "..."
    text = TEMPLATES[kind].format(summary=summary)
    if confidence < 0.7:
        text += " (a person will double-check this answer)"
    return text
