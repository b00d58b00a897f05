"""The HTTP listener of one worker: aiohttp's HTTP/1.1 protocol on listening
sockets this module binds, with a deadline for each request's headers, a bound
on idle keep-alive connections, and a stop that resets nothing queued.

Why not aiohttp's own sites (``web.TCPSite``):

- aiohttp bounds the headers of a request by nothing but its keep-alive
  timer (``RequestHandler(keepalive_timeout=3630)``: an hour): a client that
  opens connections and sends nothing, or its headers a byte at a time
  (slowloris), holds each of them that long. ``HeaderDeadlineHandler`` adds
  ``COLLECTOR_HEADER_READ_TIMEOUT_S``; ``COLLECTOR_KEEPALIVE_TIMEOUT_S`` is
  aiohttp's timer for idle keep-alive connections.
- ``TCPSite.stop`` closes the listening socket, and the kernel resets every
  connection queued on it that the loop had not accepted yet: measured with
  ``serve --workers 2``, 64 keep-alive senders in a closed loop and SIGTERM,
  5 runs of 8 reset 3-29 freshly connected requests (their clients reconnect
  at once on the ``Connection: close`` answers of the stop).
  ``Listener.stop_accepting`` accepts what is queued and closes the socket in
  one step of the loop (no await between the last accept and the close).

What aiohttp provides and this module uses: ``web.Server`` (``runner.server``)
as the manager of the connections (it counts them and waits for their
requests on ``runner.cleanup()``), and ``web_protocol.RequestHandler``, its
per-connection protocol, subclassed; aiohttp's sites build exactly this
protocol (``Server.__call__``).
"""

from __future__ import annotations

import asyncio
import socket

import orjson
from aiohttp import web, web_protocol

from collector.config import Settings
from collector.ops import metrics
from collector.ops.logs import log

#: Listen queue per socket (aiohttp's and asyncio's default).
BACKLOG = 128


class HeaderDeadlineHandler(web_protocol.RequestHandler):
    """aiohttp's protocol for one connection, plus a deadline for request headers.

    The deadline (``header_read_timeout_s``) runs from the connection's start,
    and on a kept-alive connection from the first byte of its next request;
    it stops when that request's handler begins (``headers_received``, which
    the HTTP layer's middleware calls for every request). When it passes
    first, the connection is closed: after a 408 ``read_timeout`` answer if
    some bytes of the request had arrived, at once if none had (an idle
    connection). Idle keep-alive connections: aiohttp's ``keepalive_timeout``
    closes one that long after its last answer unless a request's headers are
    in by then. Bodies have their own deadline (``COLLECTOR_BODY_READ_TIMEOUT_S``,
    ``collector.ingest``).
    """

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop,
                 header_read_timeout_s: float, timeout_answer: bytes, **kwargs) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._deadline_loop = loop
        self._header_read_timeout_s = header_read_timeout_s
        self._timeout_answer = timeout_answer
        self._header_deadline: asyncio.TimerHandle | None = None
        self._between_requests = True  # no request's handler running: its headers are awaited
        self._request_started = False  # a byte has arrived since the deadline was armed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._between_requests and data:
            if self._header_deadline is None:  # the first byte of a request on a kept-alive connection
                self._arm()
            self._request_started = True
        super().data_received(data)

    def headers_received(self) -> None:
        """A request's headers are in and its handler begins: no deadline until its answer is sent."""
        self._between_requests = False
        self._request_started = False
        self._disarm()

    async def finish_response(self, request, resp, start_time):
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            # Answered: the next request's headers are awaited (from its first byte),
            # unless the connection closes after this answer (``Connection: close``,
            # or a body left unread: the middleware force-closes the answer). What
            # still arrives then is the rest of that body, which aiohttp reads and
            # drops for its lingering time; a deadline on it sent a second,
            # unasked-for 408 (a newcomer's break-it pass).
            self._between_requests = bool(resp.keep_alive) and not self._close and not self._force_close

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (a request line or
        header too long, too many headers, not HTTP) or whose handler failed
        outside the middleware: in the collector's error shape (``{"error",
        "detail"}``, JSON), counted (``collector_unreadable_requests_total``),
        logged without the client's address or any of its bytes. aiohttp's own
        answered plain text quoting the start of the offending line, and
        logged the client's IP address. The connection closes."""
        if request.writer.output_size > 0:  # an answer is on its way already: the connection is broken
            raise ConnectionError("an answer was sent already")
        metrics.UNREADABLE_REQUESTS.labels(str(status)).inc()
        log.info("request_unreadable", status=status, error=type(exc).__name__ if exc else None)
        error, detail = ("internal_error", "the collector failed on this request") if status >= 500 else (
            "too_large" if status in (413, 431) else "malformed_request",
            "the request line or headers could not be read")
        response = web.Response(status=status, body=orjson.dumps({"error": error, "detail": detail}),
                                content_type="application/json")
        response.force_close()
        return response

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_deadline = self._deadline_loop.call_later(self._header_read_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expired(self) -> None:
        self._header_deadline = None
        if not self._between_requests or self.transport is None:
            return
        metrics.HEADER_TIMEOUTS.labels("partial" if self._request_started else "idle").inc()
        if self._request_started:
            self.transport.write(self._timeout_answer)
        self.force_close()  # the transport closes once the answer is written


def headers_received(request: web.BaseRequest) -> None:
    """Tell the connection that ``request``'s headers are in (its deadline stops);
    the HTTP layer calls it as each request's handling begins. Nothing on a
    connection this module did not make (aiohttp's test server)."""
    protocol = request.protocol
    if isinstance(protocol, HeaderDeadlineHandler):
        protocol.headers_received()


def timeout_answer(header_read_timeout_s: float) -> bytes:
    """The whole HTTP/1.1 answer a trickling client gets: 408, the collector's
    error shape (``{"error", "detail"}``), ``Connection: close``."""
    body = orjson.dumps({"error": "read_timeout",
                         "detail": f"the request's headers did not arrive within {header_read_timeout_s:g} s"})
    return (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)) + body


def bind(host: str, port: int, *, reuse_port: bool = False, recv_buffer: int = 0) -> list[socket.socket]:
    """Listening sockets for ``host:port`` as asyncio's ``create_server`` makes
    them: one per address ``host`` resolves to (every interface when empty),
    ``SO_REUSEADDR``, ``IPV6_V6ONLY`` on IPv6, ``SO_REUSEPORT`` when asked (the
    workers of ``serve --workers N``), non-blocking; ``SO_RCVBUF`` ``recv_buffer``
    bytes when not 0 (``COLLECTOR_RECV_BUFFER_BYTES``; set before ``listen``, so the
    window the handshake offers fits it; accepted connections inherit it).
    Raises OSError (in use)."""
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if recv_buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Serves the application of ``runner`` (set up) on ``sockets`` (``bind``), each
    connection with ``HeaderDeadlineHandler``. ``start`` begins accepting;
    ``stop_accepting`` ends it; then ``runner.cleanup()`` answers the requests
    in flight, as with aiohttp's sites."""

    def __init__(self, runner: web.BaseRunner, sockets: list[socket.socket], settings: Settings) -> None:
        self._runner = runner
        self._sockets = sockets
        self._settings = settings
        self._servers: list[asyncio.AbstractServer] = []
        self._answer = timeout_answer(settings.header_read_timeout_s)

    @property
    def addresses(self) -> list[tuple]:
        """The socket addresses listened on (``(host, port, ...)``)."""
        return [sock.getsockname() for sock in self._sockets]

    def protocol(self) -> HeaderDeadlineHandler:
        """A new connection's protocol (what ``web.Server()`` builds, with the deadline)."""
        manager = self._runner.server
        assert manager is not None, "runner.setup() first"
        return HeaderDeadlineHandler(
            manager, loop=asyncio.get_running_loop(), header_read_timeout_s=self._settings.header_read_timeout_s,
            timeout_answer=self._answer, keepalive_timeout=self._settings.keepalive_timeout_s, access_log=None,
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            # The loop serves a duplicate: closing it stops the loop's accepting
            # while the socket itself, and what the kernel queues on it, lives on.
            self._servers.append(await loop.create_server(self.protocol, sock=sock.dup(), backlog=BACKLOG))

    async def stop_accepting(self) -> int:
        """Stop accepting: the connections the kernel has queued are accepted and
        served (not reset), and the sockets closed, with no await in between;
        connections arriving later are refused. Returns how many were queued."""
        loop = asyncio.get_running_loop()
        for server in self._servers:
            server.close()
        self._servers = []
        queued: list[socket.socket] = []
        for sock in self._sockets:
            while True:
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # out of file descriptors, or closed already: nothing more to take
                    break
                queued.append(conn)
            sock.close()
        self._sockets = []
        for conn in queued:
            try:
                await loop.connect_accepted_socket(self.protocol, conn)
            except OSError:  # the client left meanwhile
                conn.close()
        return len(queued)
