from promptflow.core import tool


@tool
def stats(text: str, suffix: str) -> dict:
    return {"length": len(text), "utf8_bytes": len(text.encode("utf-8")), "reversed": text[::-1], "suffixed": text + suffix}
