import math
import re
from typing import Union

from promptflow.connections import AzureOpenAIConnection, OpenAIConnection
from promptflow.core import tool
from promptflow.tools.aoai import chat as aoai_chat
from promptflow.tools.openai import chat as openai_chat

PROMPT = """# system:
Rate from 1 to 5 how well the assistant's answer sticks to facts. Reply with the number only.

# user:
MT grounding
Question: {{question}}
Answer: {{answer}}
"""


@tool
def grounding(connection: Union[AzureOpenAIConnection, OpenAIConnection], chat_history: list,
              model: str) -> float:
    scores = []
    for turn in chat_history:
        variables = {"question": turn["inputs"]["question"], "answer": turn["outputs"]["answer"]}
        if isinstance(connection, AzureOpenAIConnection):
            reply = aoai_chat(connection=connection, prompt=PROMPT, deployment_name=model,
                              temperature=0, max_tokens=5, **variables)
        else:
            reply = openai_chat(connection=connection, prompt=PROMPT, model=model,
                                temperature=0, max_tokens=5, **variables)
        match = re.search(r"\d+(?:\.\d+)?", reply)
        if match:
            scores.append(float(match.group()))
    return sum(scores) / len(scores) if scores else math.nan
