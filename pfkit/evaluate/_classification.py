"""Classification metrics over a run: accuracy, per-class precision/recall/F1, macro-F1 and the
confusion matrix. Labels are compared after stripping and case folding."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any


def label(value: Any) -> str:
    return "" if value is None else str(value).strip().casefold()


def classification_report(predictions: Sequence[Any], truths: Sequence[Any]) -> dict[str, Any]:
    """``{"accuracy", "macro_f1", "classes": {label: {precision, recall, f1, support}},
    "confusion_matrix": {"labels": [...], "matrix": [[...]]}}`` (rows: truth, columns:
    prediction). A class never predicted has precision 0; never true, recall 0; macro-F1
    averages every label seen on either side, as scikit-learn does."""
    pairs = [(label(t), label(p)) for p, t in zip(predictions, truths, strict=True)]
    if not pairs:
        return {"accuracy": None, "macro_f1": None, "classes": {},
                "confusion_matrix": {"labels": [], "matrix": []}, "n": 0}
    counts = Counter(pairs)
    labels = sorted({t for t, _ in pairs} | {p for _, p in pairs})
    classes: dict[str, dict[str, float]] = {}
    for name in labels:
        tp = counts[(name, name)]
        predicted = sum(c for (_, p), c in counts.items() if p == name)
        actual = sum(c for (t, _), c in counts.items() if t == name)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        classes[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    macro_f1 = sum(c["f1"] for c in classes.values()) / len(classes)  # as scikit-learn's
    matrix = [[counts[(t, p)] for p in labels] for t in labels]
    accuracy = sum(counts[(name, name)] for name in labels) / len(pairs)
    return {"accuracy": accuracy, "macro_f1": macro_f1, "classes": classes,
            "confusion_matrix": {"labels": labels, "matrix": matrix}, "n": len(pairs)}


def exact_label_match(prediction: Any, truth: Any) -> float:
    """1.0 when the labels agree after stripping and case folding."""
    return float(label(prediction) == label(truth))
