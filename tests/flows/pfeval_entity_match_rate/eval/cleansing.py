from promptflow.core import tool


@tool
def cleansing(entities_str: str) -> list:
    parts = (part.strip(' \t."') for part in entities_str.split(","))
    return [part for part in parts if part]
