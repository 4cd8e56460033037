import math
import re

import openai
from promptflow.connections import OpenAIConnection
from promptflow.core import tool

SAMPLES = 5


@tool
def geval(connection: OpenAIConnection, prompt: str, model: str, max_score: int) -> float:
    """G-Eval style: several samples of the judge, the valid scores averaged."""
    client = openai.OpenAI(api_key=connection.api_key, base_url=connection.base_url, max_retries=0)
    response = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=1,
        max_tokens=5, n=SAMPLES)
    scores = []
    for choice in response.choices:
        found = re.search(r"\d+(?:\.\d+)?", choice.message.content or "")
        if found and 1 <= float(found.group()) <= max_score:
            scores.append(float(found.group()))
    return sum(scores) / len(scores) if scores else math.nan
