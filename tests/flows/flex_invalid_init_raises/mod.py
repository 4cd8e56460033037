class Boom:
    def __init__(self):
        raise RuntimeError("no init today")

    def __call__(self, x: int) -> int:
        return x
