from promptflow.connections import OpenAIConnection
from promptflow.core import tool


@tool
def use_conn(connection: OpenAIConnection, text: str) -> dict:
    return {
        "type": type(connection).__name__,
        "api_key": connection.api_key,
        "base_url_is_local": str(connection.base_url).startswith("http://127.0.0.1:"),
        "base_url_ends_with_v1": str(connection.base_url).endswith("/v1"),
        "text": text,
    }
