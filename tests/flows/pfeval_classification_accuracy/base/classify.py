from promptflow.core import tool

KEYWORDS = {"download": "APP", "install": "APP", "refund": "billing", "invoice": "Billing",
            "password": "Account"}


@tool
def classify(text: str) -> str:
    lowered = text.lower()
    if "crash" in lowered:
        raise ValueError(f"cannot classify: {text}")
    for word, category in KEYWORDS.items():
        if word in lowered:
            return category
    return "Other"
