import pfkit_fixture_package_that_does_not_exist  # noqa: F401

from promptflow.core import tool


@tool
def needs_pkg(x: str) -> str:
    return x
