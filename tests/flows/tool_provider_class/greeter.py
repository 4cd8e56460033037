from promptflow.core import ToolProvider, tool


class Greeter(ToolProvider):
    def __init__(self, greeting: str, times: int = 1):
        super().__init__()
        self.greeting = greeting
        self.times = times

    @tool
    def greet(self, name: str, punctuation: str = ".") -> dict:
        text = " ".join([f"{self.greeting}, {name}{punctuation}"] * int(self.times))
        return {"text": text, "times_type": type(self.times).__name__, "class": type(self).__name__}
