from promptflow.core import tool

from pfkit.evaluate import numeric_match


@tool
def score(answer: str, ground_truth: str, abs_tol: float = 1e-6, rel_tol: float = 0.0,
          last_number: bool = False) -> float | None:
    return numeric_match(answer, ground_truth, abs_tol=abs_tol, rel_tol=rel_tol,
                         last=last_number)
