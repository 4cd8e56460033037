from pathlib import Path

from promptflow.core import Prompty

class Chain:
    def __init__(self):
        self.prompty = Prompty.load(Path(__file__).parent / "ask.prompty")

    def __call__(self, question: str) -> dict:
        reply = self.prompty(question=question)
        return {"reply": reply}
