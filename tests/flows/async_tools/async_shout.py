import asyncio

from promptflow.core import tool


@tool
async def async_shout(text: str) -> str:
    await asyncio.sleep(0.01)
    return text.upper() + "!"
