from promptflow.core import tool


@tool
def reading_level(words: int, sentences: int, average_word_length: float) -> str:
    if words == 0:
        return "empty"
    words_per_sentence = words / max(sentences, 1)
    score = words_per_sentence * 0.4 + average_word_length * 2
    if score < 10:
        return "easy"
    if score < 16:
        return "medium"
    return "hard"
