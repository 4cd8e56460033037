from promptflow.core import tool


@tool
def is_match(answer: list, ground_truth: list) -> dict:
    said = sorted({str(a).strip(' \t."').lower() for a in answer} - {""})
    truth = sorted({g.lower() for g in ground_truth})
    return {
        "exact_match": int(said == truth),
        "partial_match": int(bool(said) and all(a in truth for a in said)),
        "answer": said,
        "ground_truth": truth,
    }
