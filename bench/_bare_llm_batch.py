"""The floor for ``bench/batch.py`` (b): the same LLM-bound batch without any framework.

    .venv/bin/python bench/_bare_llm_batch.py --client openai|openai-aiohttp|asyncio --base-url URL
        --data questions.jsonl --out outputs.jsonl [--concurrency 32]

Reads the ``question`` column, and per line makes the two sequential chat calls of
``bench/flows/two_llm`` (same system prompts, same model and parameters; the second call sends
the first call's reply), with ``--concurrency`` workers on one event loop, then writes one JSON
line per input line and prints ``{"status": "Completed", "lines": N, "duration": s}``.

``--client openai``: the official ``openai.AsyncOpenAI`` client with its default (httpx)
transport, imported inside the timed process (as pfkit must), one client for all workers,
``max_retries=0``. ``--client openai-aiohttp``: the same with ``http_client=
openai.DefaultAioHttpClient()`` (the transport pfkit picks when aiohttp is installed). These are
the floors for any engine that calls models through the openai package.
``--client aiohttp``: one plain ``aiohttp.ClientSession`` posting the JSON bodies (the library
pfkit's default transport is built on), with no openai package at all.
``--client asyncio``: a minimal HTTP/1.1 keep-alive client on ``asyncio`` streams (one
connection per worker, ``Content-Length`` bodies only; enough for pfkit's test server, not a
general client). It shows what the same calls cost without the openai/httpx stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))
from _minihttp import MiniHttpClient  # noqa: E402

SYSTEM_1 = "You answer in one short sentence."
SYSTEM_2 = "You check an answer and repeat it if it is right."
MODEL = "gpt-4o-mini"


class MiniClient:
    """One keep-alive connection; ``chat(body)`` posts to /chat/completions, returns the JSON."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.http = MiniHttpClient(parts.hostname or "127.0.0.1", parts.port or 80)
        self.path = parts.path.rstrip("/") + "/chat/completions"

    async def chat(self, body: dict) -> dict:
        status, payload = await self.http.post(self.path, json.dumps(body).encode(), {
            "Authorization": "Bearer sk-bench", "Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
        return json.loads(payload)

    async def close(self) -> None:
        await self.http.close()


def messages(system: str, user: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


async def run(args: argparse.Namespace) -> int:
    with open(args.data, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    results: list[dict | None] = [None] * len(rows)
    todo = iter(range(len(rows)))

    if args.client in ("openai", "openai-aiohttp"):
        import openai

        extra = {"http_client": openai.DefaultAioHttpClient()} \
            if args.client == "openai-aiohttp" else {}
        client = openai.AsyncOpenAI(base_url=args.base_url, api_key="sk-bench", max_retries=0,
                                    **extra)

        async def worker() -> None:
            for i in todo:
                first = await client.chat.completions.create(
                    model=MODEL, temperature=0.0, top_p=1.0,
                    messages=messages(SYSTEM_1, rows[i]["question"]))
                answer = first.choices[0].message.content
                second = await client.chat.completions.create(
                    model=MODEL, temperature=0.0, top_p=1.0, messages=messages(SYSTEM_2, answer))
                results[i] = {"answer": answer, "review": second.choices[0].message.content}

        closers = [client.close]
    elif args.client == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        url = args.base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}

        async def chat(body: dict) -> str:
            async with session.post(url, data=json.dumps(body).encode(), headers=headers) as r:
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {(await r.read())[:200]!r}")
                return json.loads(await r.read())["choices"][0]["message"]["content"]

        async def worker() -> None:
            for i in todo:
                answer = await chat({"model": MODEL, "temperature": 0.0, "top_p": 1.0,
                                     "messages": messages(SYSTEM_1, rows[i]["question"])})
                review = await chat({"model": MODEL, "temperature": 0.0, "top_p": 1.0,
                                     "messages": messages(SYSTEM_2, answer)})
                results[i] = {"answer": answer, "review": review}

        closers = [session.close]
    else:
        clients = [MiniClient(args.base_url) for _ in range(args.concurrency)]

        async def worker_with(client: MiniClient) -> None:
            for i in todo:
                body = {"model": MODEL, "temperature": 0.0, "top_p": 1.0,
                        "messages": messages(SYSTEM_1, rows[i]["question"])}
                answer = (await client.chat(body))["choices"][0]["message"]["content"]
                body = {"model": MODEL, "temperature": 0.0, "top_p": 1.0,
                        "messages": messages(SYSTEM_2, answer)}
                review = (await client.chat(body))["choices"][0]["message"]["content"]
                results[i] = {"answer": answer, "review": review}

        it = iter(clients)

        def worker():  # noqa: ANN202
            return worker_with(next(it))

        closers = [c.close for c in clients]

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    duration = time.perf_counter() - start
    for close in closers:
        await close()
    done = 0
    with open(args.out, "w", encoding="utf-8") as fh:
        for i, result in enumerate(results):
            if result and result["answer"] and result["review"]:
                done += 1
                fh.write(json.dumps({"line_number": i, **result}) + "\n")
    status = "Completed" if done == len(rows) else "Failed"
    print(json.dumps({"status": status, "lines": done, "duration": round(duration, 6)}))
    return 0 if status == "Completed" else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", choices=("openai", "openai-aiohttp", "aiohttp", "asyncio"),
                        required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
