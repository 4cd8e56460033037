from promptflow import tool
from promptflow.contracts.multimedia import Image, PFBytes


@tool
def describe(img: Image) -> dict:
    return {"text": str(img), "mime": img._mime_type, "size": len(img),
            "is_image": isinstance(img, Image), "is_pfbytes": isinstance(img, PFBytes),
            "is_bytes": isinstance(img, bytes), "head": img.to_base64()[:16],
            "typed": img.to_base64(with_type=True)[:26], "source_url": img.source_url}
