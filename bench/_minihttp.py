"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generation and floors.

One connection per client, ``Content-Length`` bodies only (what pfkit's servers, uvicorn and the
test server send for JSON), no TLS, no redirects: just enough to cost as little CPU per request
as Python allows, so that what a benchmark measures is the server, not its load generator.
"""

from __future__ import annotations

import asyncio


class MiniHttpClient:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, data: bytes, headers: dict[str, str] | None = None
                   ) -> tuple[int, bytes]:
        """(status, body) of ``POST path`` with ``data``."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        self.writer.write(head + data)
        assert self.reader is not None
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
