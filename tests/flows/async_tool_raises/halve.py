import asyncio

from promptflow.core import tool


class OddNumberError(Exception):
    pass


@tool
async def halve(n: int) -> int:
    await asyncio.sleep(0)
    if n % 2:
        raise OddNumberError(f"{n} is odd")
    return n // 2
