"""What stands between the network and the routes: API key, body size, slow clients.

`Guard` is a plain ASGI middleware, so it answers before anything reads the
body: a wrong key is a 401 and an announced oversize body a 413 without one
byte of it being read (the connection is closed, the rest never arrives).
`read_body` enforces the same limit for chunked bodies and a per-read
timeout for clients that send slowly. `HeaderTimeoutH11` closes connections
whose request headers do not arrive in time (uvicorn itself only times out
idle keep-alive connections, so a half-sent request would be held forever).
"""
from __future__ import annotations

import asyncio
import hmac
import json
from typing import List, Optional

from uvicorn.protocols.http.h11_impl import H11Protocol

from .protocol import RequestError

OPEN_PATHS = ("/health",)  # like SGLang: health checks need no key


async def send_error(send, error: RequestError, *, close: bool = False) -> None:
    body = json.dumps(error.payload(), ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the request body was not read: this connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, *, api_key: Optional[str], max_body_bytes: int):
        self.app = app
        self.api_key = api_key.encode("utf-8") if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])  # lower-cased names (ASGI)
        if self.api_key and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
            return await send_error(send, RequestError(
                "Unauthorized: send the server's API key as 'Authorization: Bearer KEY'", 401,
                "AuthenticationError"), close=True)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return await send_error(send, too_large(int(length), self.max_body_bytes), close=True)
        return await self.app(scope, receive, send)

    def _authorized(self, headers) -> bool:
        given = headers.get(b"authorization", b"")
        assert self.api_key is not None  # only called when a key is set
        return hmac.compare_digest(given, b"Bearer " + self.api_key)  # constant time


def too_large(size: int, limit: int) -> RequestError:
    return RequestError(f"request body of {size} bytes is larger than the server's limit of {limit} bytes "
                        f"(--max-body-bytes)", 413, "PayloadTooLargeError")


async def read_body(request, *, limit: int, timeout: float) -> bytes:
    """The whole body, at most `limit` bytes, each chunk within `timeout` seconds; RequestError otherwise."""
    chunks: List[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout)
        except StopAsyncIteration:
            return b"".join(chunks)
        except asyncio.TimeoutError:
            raise RequestError(f"request body not received within {timeout:g} s", 408,
                               "RequestTimeoutError") from None
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not send a request's headers in time."""

    header_timeout = 10.0
    _header_timer: Optional[asyncio.TimerHandle]

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_timer = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the next request on a keep-alive connection gets the same deadline
        super().data_received(data)

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        cycle = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout, self._expire, cycle)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self, cycle) -> None:
        self._header_timer = None
        if self.cycle is cycle and not self.transport.is_closing():  # no new request began
            self.transport.close()
