import asyncio

async def tokens(text: str):
    for word in text.split():
        await asyncio.sleep(0)
        yield word.upper()
