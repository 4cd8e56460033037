def count(n: int):
    for i in range(n):
        yield f"{i},"
