def build(name: str, greeting: str = "Hi", times: int = 1) -> str:
    return " ".join([f"{greeting} {name}"] * times)
