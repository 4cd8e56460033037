class Scorer:
    def __init__(self):
        self.calls = 0

    def __call__(self, answer: str, truth: str) -> dict:
        if answer == "boom":
            raise ValueError("cannot score boom")
        return {"correct": answer == truth}

    def __aggregate__(self, results: list) -> dict:
        right = sum(1 for r in results if r.correct)
        return {"accuracy": right / len(results), "n": len(results)}
