from promptflow.core import tool


@tool
def label(text: str, stats: dict) -> str:
    size = "long" if stats["words"] > 8 else "short"
    return f"{size}: {stats['words']} words, {stats['chars']} chars, longest '{stats['longest']}'"
