from helper_lib import decorate

def run(text: str) -> str:
    return decorate(text)
