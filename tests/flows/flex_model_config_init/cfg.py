from promptflow.core import OpenAIModelConfiguration

class Bot:
    def __init__(self, model_config: OpenAIModelConfiguration, tag: str = "t"):
        self.config = model_config
        self.tag = tag

    def __call__(self, q: str) -> dict:
        return {"model": self.config.model, "kind": type(self.config).__name__, "q": q, "tag": self.tag}
