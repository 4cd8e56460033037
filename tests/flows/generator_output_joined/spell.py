from promptflow.core import tool


@tool
def spell(word: str):
    for ch in word:
        yield ch + "-"
