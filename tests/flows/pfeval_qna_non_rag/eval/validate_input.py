from promptflow.core import tool

NEEDS = {
    "f1_score": ("answer", "ground_truth"),
    "ada_similarity": ("answer", "ground_truth"),
    "gpt_groundedness": ("answer", "context"),
    "gpt_relevance": ("question", "answer", "context"),
    "gpt_fluency": ("question", "answer"),
}


@tool
def validate_input(question: str, answer: str, context: str, ground_truth: str,
                   selected_metrics: dict) -> dict:
    given = {"question": question, "answer": answer, "context": context,
             "ground_truth": ground_truth}
    present = {key for key, value in given.items() if value and value.strip()}
    return {metric: bool(selected_metrics[metric]) and all(f in present for f in fields)
            for metric, fields in NEEDS.items()}
