import asyncio

from promptflow.core import tool


@tool
async def async_stream(text: str):
    for i, word in enumerate(text.split()):
        await asyncio.sleep(0)
        yield f"[{i}:{word}]"
