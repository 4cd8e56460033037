from helpers.textutil import shout, word_count

from promptflow.core import tool


@tool
def use_helpers(text: str) -> dict:
    return {"shout": shout(text), "words": word_count(text), "helper_module": shout.__module__}
