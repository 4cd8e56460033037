class Counter:
    def __init__(self, prefix: str, step: int = 2):
        self.prefix = prefix
        self.step = step

    def __call__(self, n: int) -> dict:
        return {"label": f"{self.prefix}{n * self.step}", "step": self.step}
