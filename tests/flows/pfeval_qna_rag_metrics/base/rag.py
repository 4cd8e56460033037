from promptflow.core import tool

LIBRARY = [
    {"title": "Tides", "content": "Tides are caused by the Moon's gravity."},
    {"title": "Rain", "content": "Rain forms when water vapour condenses."},
    {"title": "Volcano", "content": "Lava is molten rock that reaches the surface."},
]


@tool
def rag(question: str) -> dict:
    words = {w.strip("?.,").lower() for w in question.split()}
    if "forbidden" in words:
        raise PermissionError("retrieval refused this question")
    hits = [d for d in LIBRARY if words & {w.strip("'s.").lower() for w in d["content"].split()}]
    answer = " ".join(d["content"] for d in hits) if hits else "I found nothing."
    return {"answer": answer, "documents": hits}
