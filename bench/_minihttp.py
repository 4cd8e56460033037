"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generation and floors.

One connection per client (opened again when the server closes it), ``Content-Length``,
chunked and close-delimited bodies, no TLS, no redirects: just enough to cost as little CPU per
request as Python allows, so that what a benchmark measures is the server, not its load
generator.
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
        reader = self.reader
        header = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = header[:-4].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        fields = {}
        for line in lines:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        keep = fields.get(b"connection") != b"close" and (
            not status_line.startswith(b"HTTP/1.0") or fields.get(b"connection") == b"keep-alive")
        if b"content-length" in fields:
            body = await reader.readexactly(int(fields[b"content-length"]))
        elif fields.get(b"transfer-encoding") == b"chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(part[:-2] for part in parts)
        else:  # the body runs to the end of the connection
            body, keep = await reader.read(), False
        if not keep:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
