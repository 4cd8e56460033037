from promptflow.connections import OpenAIConnection
from promptflow.core import tool
from promptflow.tools.common import parse_chat, render_jinja_template
from promptflow.tools.openai import OpenAI, chat, completion

CHAT = "# system:\nAnswer in one word.\n# user:\n{{question}}\n"


@tool
def ask(conn: OpenAIConnection, question: str) -> dict:
    rendered = render_jinja_template(CHAT, question=question)
    return {
        "rendered": rendered,
        "parsed": parse_chat(rendered),
        "chat": chat(connection=conn, prompt=CHAT, question=question, model="gpt-4o-mini",
                     max_tokens=12, temperature=0),
        "completion": completion(connection=conn, prompt="Q: {{q}}\nA:", q=question,
                                 model="gpt-35-turbo-instruct", max_tokens=5, stop=["\n"]),
        "provider_chat": OpenAI(conn).chat(prompt="# user:\n{{q}} {{n}}", q=question, n=3,
                                           model="gpt-4o-mini", seed=7, stop=["END"]),
    }
