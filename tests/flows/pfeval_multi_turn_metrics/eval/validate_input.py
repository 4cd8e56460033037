from promptflow.core import tool


def _valid_turn(turn) -> bool:
    if not isinstance(turn, dict):
        return False
    question = (turn.get("inputs") or {}).get("question")
    answer = (turn.get("outputs") or {}).get("answer")
    return bool(question) and bool(answer)


@tool
def validate_input(chat_history: list, selected_metrics: dict) -> dict:
    valid = bool(chat_history) and all(_valid_turn(turn) for turn in chat_history)
    return {name: valid and chosen for name, chosen in selected_metrics.items()}
