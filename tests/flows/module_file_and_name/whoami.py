import os

from promptflow.core import tool

MODULE_NAME = __name__


@tool
def whoami() -> dict:
    return {
        "file_is_abs": os.path.isabs(__file__),
        "file_basename": os.path.basename(__file__),
        "name": __name__,
        "module_level_name": MODULE_NAME,
        "cwd_is_flow_dir": os.path.basename(os.getcwd()) == "module_file_and_name",
    }
