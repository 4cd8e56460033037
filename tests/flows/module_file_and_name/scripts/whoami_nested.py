import os

from promptflow.core import tool


@tool
def whoami_nested() -> dict:
    return {
        "file_is_abs": os.path.isabs(__file__),
        "file_basename": os.path.basename(__file__),
        "parent_dir": os.path.basename(os.path.dirname(__file__)),
        "name": __name__,
    }
