from promptflow.core import tool


@tool
def convert_chat_history(chat_history: list) -> str:
    lines = []
    for turn in chat_history:
        lines.append(f"user: {(turn.get('inputs') or {}).get('question', '')}")
        lines.append(f"assistant: {(turn.get('outputs') or {}).get('answer', '')}")
    return "\n".join(lines)
