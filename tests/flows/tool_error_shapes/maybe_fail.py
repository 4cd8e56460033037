from promptflow.core import tool


class CustomToolError(Exception):
    pass


def _helper():
    try:
        {}["missing"]
    except KeyError as e:
        raise RuntimeError("wrapped failure") from e


@tool
def maybe_fail(mode: str):
    if mode == "custom":
        raise CustomToolError("custom message with unicode ✓")
    if mode == "chained":
        _helper()
    if mode == "object":
        return {1, 2}
    return "fine:" + mode
