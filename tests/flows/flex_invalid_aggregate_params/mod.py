class Agg:
    def __call__(self, x: int) -> int:
        return x

    def __aggregate__(self, results, extra):
        return {}
