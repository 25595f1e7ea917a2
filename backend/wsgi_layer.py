"""A small WSGI layer between gunicorn and Django: every client survives every answer.

An answer sent before the request body was read (401 without a key, 413, 429,
a block) leaves the rest of the body in the socket. gunicorn then drains at
most 64 KiB of it and, when more is left, closes the connection, after it had
already announced ``Connection: keep-alive``: a keep-alive client (httpx, a
requests Session, a browser) sends its next request on that connection and
gets no answer at all ("Server disconnected without sending a response").

This layer watches how much of the body the application read. When the answer
starts with part of the body unread, it tells the server to close the
connection after this answer, so the answer itself says ``Connection: close``
and the client opens a new connection for its next request. Draining instead
would make an unauthenticated client's upload cost us a full read.

It also drops the ``Server`` header that names the software: error bodies name
nothing about the stack, and neither do the headers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class _CountingInput:
    """``wsgi.input`` that remembers how many bytes the application took."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.taken = 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size) if size is not None else self._stream.read()
        self.taken += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data: bytes = self._stream.readline(size)
        self.taken += len(data)
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(hint)
        self.taken += sum(len(line) for line in lines)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self.taken += len(line)
            yield line


def _server_response(start_response: StartResponse) -> Any:
    """gunicorn's response object, whose bound method ``start_response`` is."""
    return getattr(start_response, "__self__", None)


def _without_server_header(response: Any) -> None:
    default_headers = getattr(response, "default_headers", None)
    if default_headers is None:
        return

    def headers() -> list[str]:
        return [line for line in default_headers() if not line.lower().startswith("server:")]

    response.default_headers = headers


def _close_after(start_response: StartResponse, headers: list[tuple[str, str]]) -> None:
    response = _server_response(start_response)
    if response is not None and hasattr(response, "force_close"):
        # gunicorn ignores hop-by-hop headers from the application; this is
        # its own switch, and it then sends "Connection: close" itself.
        response.force_close()
    else:
        headers.append(("Connection", "close"))


class CompleteExchanges:
    """Wraps the WSGI application; see the module docstring."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        _without_server_header(_server_response(start_response))
        try:
            expected = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            expected = 0
        chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
        if expected <= 0 and not chunked:
            return self.app(environ, start_response)
        body = _CountingInput(environ["wsgi.input"])
        environ["wsgi.input"] = body

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # Where a chunked body ends is unknown without reading it: close.
            if chunked or body.taken < expected:
                _close_after(start_response, headers)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
