from promptflow.core import tool


@tool
def validate_input(answer: str, documents: list, selected_metrics: dict) -> dict:
    has_docs = bool(documents)
    needs_docs = {"gpt_groundedness": True, "gpt_relevance": False, "gpt_retrieval_score": True}
    return {m: chosen and bool(answer) and (has_docs or not needs_docs[m])
            for m, chosen in selected_metrics.items()}
