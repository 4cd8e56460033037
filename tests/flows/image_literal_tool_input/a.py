from promptflow.contracts.multimedia import Image
from promptflow.core import tool


@tool
def a(label: str, img: Image, typed: Image) -> dict:
    return {"label": label, "img": [type(img).__name__, str(img), img._mime_type],
            "typed": [type(typed).__name__, str(typed), typed._mime_type]}
