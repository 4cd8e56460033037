from promptflow.connections import AzureOpenAIConnection
from promptflow.core import tool
from promptflow.tools.aoai import AzureOpenAI, chat, completion
from promptflow.tools.common import build_messages

CHAT = """# system:
Answer briefly.
{% for turn in history %}
# user:
{{turn.inputs.question}}
# assistant:
{{turn.outputs.answer}}
{% endfor %}
# user:
{{question}}
"""


@tool
def ask(conn: AzureOpenAIConnection, question: str, history: list) -> dict:
    provider = AzureOpenAI(conn)
    return {
        "messages": build_messages(CHAT, question=question, history=history),
        "chat": chat(connection=conn, prompt=CHAT, deployment_name="gpt-4o-mini",
                     question=question, history=history, max_tokens=30),
        "completion": completion(connection=conn, prompt="Say {{q}}", q=question,
                                 deployment_name="gpt-35-turbo-instruct", echo=True),
        "provider_chat": provider.chat(prompt="# user:\n{{q}}", deployment_name="gpt-4o-mini",
                                       q=question, n=2, temperature=0.5, user="u1"),
    }
