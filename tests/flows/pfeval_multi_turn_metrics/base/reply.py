from promptflow.core import tool

REPLIES = {
    "plan a picnic": "Bring sandwiches and a blanket.",
    "and tomorrow": "Tomorrow will be sunny.",
    "write a haiku": "Autumn moonlight, a worm digs silently.",
    "say nothing": "",
    "recommend a book": "Read Dune by Frank Herbert.",
}


@tool
def reply(question: str) -> str:
    lowered = question.lower()
    if "crash" in lowered:
        raise RuntimeError("the assistant crashed")
    for key, text in REPLIES.items():
        if key in lowered:
            return text
    return "I do not know."
