import os

def read(name: str) -> str:
    return os.environ.get("FLEX_FIXTURE_GREETING", "unset") + " " + name
