import asyncio

async def double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2
