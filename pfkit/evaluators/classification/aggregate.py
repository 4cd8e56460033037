from promptflow.core import log_metric, tool

from pfkit.evaluate import classification_report, report


@tool
def aggregate(correct: list, predictions: list, ground_truths: list) -> dict:
    """Logs accuracy (with its Wilson interval), macro_f1 and per-class precision, recall and
    F1; returns them with the confusion matrix."""
    summary = report({"accuracy": correct})
    detail = classification_report(predictions, ground_truths)
    if detail["n"]:
        log_metric("macro_f1", detail["macro_f1"])
        for name, values in detail["classes"].items():
            for key in ("precision", "recall", "f1"):
                log_metric(f"{key}.{name}", values[key])
    return {**summary, "classification": detail}
