"""An HTTP/1.1 proxy in front of the emulator that models AWS latency and injects faults.

Usage:
    .venv/bin/python emulator/proxy.py --upstream http://127.0.0.1:PORT [--port 0]
        [--delay-ms 100] [--create-stack-delay-ms 3000] [--fail-rate 0.0] [--reset-rate 0.0]
        [--seed N] [--log FILE] [--conflicts N] [--hold ACTION=MS]...

Binds 127.0.0.1 only (and forwards only to an upstream on 127.0.0.1 / localhost); --port 0
picks a free port. Once listening, prints exactly one line to stdout,
``listening on http://127.0.0.1:<port>``, then serves until SIGTERM/SIGINT (exit 0).
Clients talk to it as if it were the emulator: set the SDK's / CLI's endpoint URL to it
(S3 path-style). It is not a forward proxy (no absolute-form request targets, no CONNECT).

Per request, in this order:
1. The whole request is read (headers, then the body by Content-Length or
   ``Transfer-Encoding: chunked``; ``Expect: 100-continue`` is answered with ``100 Continue`` by
   the proxy itself, and the header is not forwarded).
2. Latency model: sleep --delay-ms (AWS API latency, per request).
3. Faults, drawn from one ``random.Random(--seed)`` stream, one draw per request: with
   probability --fail-rate the proxy answers 503 itself without forwarding (an AWS-like error
   body: S3 XML ``<Error>``, query-protocol ``<ErrorResponse>``, or JSON-protocol
   ``{"__type": ...}`` for ``X-Amz-Target`` requests); else with probability --reset-rate it
   closes the client connection abruptly (TCP RST, nothing answered).
4. A CloudFormation ``CreateStack`` (``Action=CreateStack`` in the form body or the query)
   sleeps a further --create-stack-delay-ms (AWS takes tens of seconds to create a stack; the
   emulator creates it at once, so the delay stands for the time until CREATE_COMPLETE).
5. Conditional S3 writes (a request with ``If-None-Match`` or ``If-Match``: PutObject,
   DeleteObject), as AWS makes them atomic: moto checks the precondition and then writes, so two
   such requests on one key at once could both pass; the proxy forwards them one at a time per
   key (path). With --conflicts N, the first N of them are answered ``409
   ConditionalRequestConflict`` without being forwarded, as S3 answers a conditional write that
   raced another on the same key (moto never does).
6. --hold ACTION=MS (repeatable): the first request whose ``action`` (below) is ACTION waits a
   further MS milliseconds before it is forwarded; a log line ``{"held": true, ...}`` is written
   when it starts waiting, so that a test can act while that request is in flight.
7. The request is forwarded with a de-chunked body and ``Content-Length``; hop-by-hop headers
   (Connection, Keep-Alive, Proxy-*, TE, Transfer-Encoding, Expect) are dropped, the rest
   (Host, Authorization, ...) passes unchanged. The response is relayed as it comes: by
   Content-Length or chunked as-is; a body delimited by the upstream closing is buffered and
   sent with Content-Length; HEAD, 1xx, 204 and 304 responses have no body.

``/moto-api/...`` and ``/_emulator/...`` requests (the emulator's control API and replication
log, not AWS) get neither the delay nor faults. Each client connection is kept alive as the
client asks (HTTP/1.1 by default) and is paired with its own keep-alive upstream connection,
opened on first use and re-opened when the emulator closes it, so hundreds of concurrent client
connections work.

--log FILE appends one JSON line per request (flushed per line):
``{"t": <epoch s, request start>, "method", "path", "action", "service", "key", "status",
"fault": null|"503"|"reset", "ms": <request start to response end, delay included>}``.
``action`` is the query-protocol Action, the JSON-protocol operation (the X-Amz-Target suffix)
or, for S3, the method plus the sorted query keys (``PUT ?policy``, ``GET ?versioning``) or,
without query keys, the method plus ``bucket`` / ``object`` / ``service`` (``HEAD bucket``,
``PUT object``). ``service`` is the SigV4 credential scope's service (``s3``, ``sts``,
``cloudformation``, ...) or null, ``key`` its access key id (with the emulator's 12-digit
keys, the account the request acts as) or null; ``status`` is null when the connection was
reset or the upstream failed (then the client got a 502).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import struct
import sys
import time
import urllib.parse
from dataclasses import dataclass, field

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}
MAX_HEAD = 256 * 1024  # request/response head limit (StreamReader limit)
CLIENT_IDLE_TIMEOUT = 300.0  # seconds a keep-alive client connection may stay idle
UPSTREAM_TIMEOUT = 600.0  # seconds to wait for the upstream's response head / body parts
COPY_CHUNK = 64 * 1024


class BadRequest(Exception):
    pass


class UpstreamError(Exception):
    def __init__(self, message: str, sent_nothing: bool = True) -> None:
        super().__init__(message)
        self.sent_nothing = sent_nothing  # False: part of the response already went to the client


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    keep_alive: bool = True
    start: float = field(default_factory=time.time)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urllib.parse.urlsplit(self.target).query


# --- parsing helpers -------------------------------------------------------------------------
def parse_head(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Split a message head into its first line and its (name, value) headers."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    first = lines[0]
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and headers:  # obsolete line folding
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip())
            continue
        if ":" not in line:
            raise BadRequest(f"malformed header line: {line!r}")
        k, v = line.split(":", 1)
        headers.append((k.strip(), v.strip()))
    return first, headers


def get_header(headers: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def connection_tokens(headers: list[tuple[str, str]]) -> set[str]:
    tokens: set[str] = set()
    for k, v in headers:
        if k.lower() == "connection":
            tokens |= {t.strip().lower() for t in v.split(",") if t.strip()}
    return tokens


def is_chunked(headers: list[tuple[str, str]]) -> bool:
    te = get_header(headers, "transfer-encoding")
    return bool(te) and te.split(",")[-1].strip().lower() == "chunked"


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """The head up to and including the blank line; None on a clean EOF before any byte."""
    # Tolerate stray CRLFs between messages (RFC 9112 2.2).
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if not e.partial.strip():
                return None
            raise BadRequest("connection closed inside a message head") from e
        except asyncio.LimitOverrunError as e:
            raise BadRequest("message head too large") from e
        stripped = raw.lstrip(b"\r\n")
        if stripped:
            return stripped
        # only blank lines: keep reading (bounded by the stream: each pass consumes input)


async def read_chunked_body(reader: asyncio.StreamReader) -> bytes:
    """Read a chunked body (and its trailers, which are dropped); return the payload."""
    parts: list[bytes] = []
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as e:
            raise BadRequest(f"bad chunk size {size_text!r}") from e
        if size == 0:
            # trailers until an empty line
            while True:
                trailer = await reader.readuntil(b"\r\n")
                if trailer == b"\r\n":
                    return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("chunk not followed by CRLF")


# --- AWS request classification ---------------------------------------------------------------
def form_params(req: Request) -> dict[str, str]:
    params: dict[str, str] = {}
    for k, v in urllib.parse.parse_qsl(req.query, keep_blank_values=True):
        params.setdefault(k, v)
    ctype = (req.header("content-type") or "").lower()
    if req.body and "x-www-form-urlencoded" in ctype and len(req.body) < 4 * 1024 * 1024:
        for k, v in urllib.parse.parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True):
            params.setdefault(k, v)
    return params


def sigv4_credential(req: Request) -> list[str]:
    """The SigV4 Credential: access key id, date, region, service, ``aws4_request``."""
    auth = req.header("authorization") or ""
    marker = "Credential="
    i = auth.find(marker)
    if i < 0:
        cred = dict(urllib.parse.parse_qsl(req.query)).get("X-Amz-Credential")
        return cred.split("/") if cred else []
    return auth[i + len(marker):].split(",", 1)[0].strip().split("/")


def sigv4_service(req: Request) -> str | None:
    scope = sigv4_credential(req)
    return scope[3] if len(scope) >= 5 else None


def sigv4_key(req: Request) -> str | None:
    scope = sigv4_credential(req)
    return scope[0] if len(scope) >= 5 else None


def classify(req: Request) -> tuple[str, str, str | None]:
    """(protocol: "query" | "json" | "s3", action name, service)."""
    service = sigv4_service(req)
    target = req.header("x-amz-target")
    if target:
        return "json", target.rsplit(".", 1)[-1], service
    params = form_params(req) if (req.method == "POST" or "Action=" in req.query) else {}
    if "Action" in params and service != "s3":
        return "query", params["Action"], service
    keys = sorted({k for k, _ in urllib.parse.parse_qsl(req.query, keep_blank_values=True)} - {"x-id"})
    if keys:
        action = f"{req.method} ?{'&'.join(keys)}"
    else:
        segments = [s for s in req.path.split("/") if s]
        kind = "service" if not segments else "bucket" if len(segments) == 1 else "object"
        action = f"{req.method} {kind}"
    return "s3", action, service or ("s3" if not req.path.startswith(("/moto-api", "/_emulator")) else None)


def error_response(req: Request, protocol: str, status: int, code: str, message: str) -> bytes:
    """An AWS-like error response for `req`, with status `status`."""
    rid = f"proxy-{random.getrandbits(64):016x}"
    if protocol == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{rid}</RequestId></Error>"
        ).encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", rid)]
    elif protocol == "json":
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", rid)]
    else:
        body = (
            "<ErrorResponse><Error><Type>Receiver</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{rid}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)]
    reason = {409: "Conflict", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
    head = f"HTTP/1.1 {status} {reason}\r\n"
    for k, v in headers:
        head += f"{k}: {v}\r\n"
    head += f"Content-Length: {len(body)}\r\n"
    if not req.keep_alive:
        head += "Connection: close\r\n"
    head += "\r\n"
    return head.encode("latin-1") + (b"" if req.method == "HEAD" else body)


# --- the proxy -----------------------------------------------------------------------------------
class Proxy:
    def __init__(self, args: argparse.Namespace) -> None:
        u = urllib.parse.urlsplit(args.upstream)
        if u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost") or not u.port:
            raise SystemExit("--upstream must be http://127.0.0.1:PORT (this proxy only talks to 127.0.0.1)")
        self.up_host = "127.0.0.1"
        self.up_port = u.port
        self.delay = args.delay_ms / 1000.0
        self.stack_delay = args.create_stack_delay_ms / 1000.0
        self.fail_rate = args.fail_rate
        self.reset_rate = args.reset_rate
        self.rng = random.Random(args.seed)
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None
        self.tasks: set[asyncio.Task] = set()
        self.conflicts_left = args.conflicts
        self.holds: dict[str, float] = {}
        for spec in args.hold:
            action, _, ms = spec.rpartition("=")
            self.holds[action] = float(ms) / 1000.0
        self.key_locks: dict[str, asyncio.Lock] = {}

    def write_log(self, req: Request, action: str, service: str | None, status: int | None,
                  fault: str | None, held: bool = False) -> None:
        if not self.log:
            return
        entry: dict = {"held": True} if held else {}
        entry |= {
            "t": round(req.start, 6),
            "method": req.method,
            "path": req.path,
            "action": action,
            "service": service,
            "key": sigv4_key(req),
            "status": status,
            "fault": fault,
            "ms": round((time.time() - req.start) * 1000.0, 3),
        }
        self.log.write(json.dumps(entry) + "\n")
        self.log.flush()

    # client side ------------------------------------------------------------------------------
    async def handle_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self.tasks.add(task)
        upstream: list = [None, None]  # [reader, writer] of this client's upstream connection
        try:
            for _ in range(1_000_000):  # bounded: far more requests than any client sends on one connection
                try:
                    req = await asyncio.wait_for(self.read_request(reader, writer), CLIENT_IDLE_TIMEOUT)
                except (asyncio.TimeoutError, BadRequest, ConnectionError, asyncio.IncompleteReadError):
                    break
                if req is None:
                    break
                if not await self.serve(req, writer, upstream):
                    break
                if not req.keep_alive:
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            close_upstream(upstream)
            if not writer.is_closing():
                writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (Exception, asyncio.CancelledError):
                pass
            if task:
                self.tasks.discard(task)

    async def read_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
        raw = await read_head(reader)
        if raw is None:
            return None
        start = time.time()
        first, headers = parse_head(raw)
        parts = first.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(f"bad request line {first!r}")
        method, target, version = parts
        tokens = connection_tokens(headers)
        keep_alive = ("close" not in tokens) if version == "HTTP/1.1" else ("keep-alive" in tokens)
        req = Request(method, target, version, headers, keep_alive=keep_alive, start=start)
        expect = (req.header("expect") or "").lower()
        if expect == "100-continue" and version == "HTTP/1.1":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        if is_chunked(headers):
            req.body = await read_chunked_body(reader)
        else:
            cl = req.header("content-length")
            if cl:
                try:
                    n = int(cl)
                except ValueError as e:
                    raise BadRequest(f"bad Content-Length {cl!r}") from e
                req.body = await reader.readexactly(n) if n > 0 else b""
        return req

    async def serve(self, req: Request, writer: asyncio.StreamWriter, upstream: list) -> bool:
        """Answer one request. False: the client connection must be closed now."""
        protocol, action, service = classify(req)
        control = req.path.startswith(("/moto-api/", "/_emulator/")) or req.path in ("/moto-api", "/_emulator")
        if not control:
            # one draw per request, made before any await, so the sequence is reproducible
            draw = self.rng.random()
            if self.delay > 0:
                await asyncio.sleep(self.delay)
            if draw < self.fail_rate:
                writer.write(error_response(req, protocol, 503, "ServiceUnavailable", "injected"))
                await writer.drain()
                self.write_log(req, action, service, 503, "503")
                return True
            if draw < self.fail_rate + self.reset_rate:
                self.write_log(req, action, service, None, "reset")
                abort(writer)
                return False
            if protocol == "query" and action == "CreateStack" and self.stack_delay > 0:
                await asyncio.sleep(self.stack_delay)
            hold = self.holds.pop(action, None)
            if hold is not None:
                self.write_log(req, action, service, None, None, held=True)
                await asyncio.sleep(hold)
        conditional = protocol == "s3" and not control and (
            req.header("if-none-match") is not None or req.header("if-match") is not None)
        if conditional and self.conflicts_left > 0:
            self.conflicts_left -= 1
            writer.write(error_response(req, protocol, 409, "ConditionalRequestConflict",
                                        "A conflicting operation occurred (injected)"))
            await writer.drain()
            self.write_log(req, action, service, 409, "409")
            return True
        try:
            if conditional:
                lock = self.key_locks.setdefault(req.path, asyncio.Lock())
                async with lock:
                    status, keep = await self.forward(req, writer, upstream)
            else:
                status, keep = await self.forward(req, writer, upstream)
        except UpstreamError as e:
            print(f"proxy: upstream error on {req.method} {req.target}: {e}", file=sys.stderr)
            status = None
            if e.sent_nothing:
                req.keep_alive = False
                status = 502
                try:
                    writer.write(error_response(req, protocol, 502, "BadGateway", "emulator failed"))
                    await writer.drain()
                except ConnectionError:
                    pass
            self.write_log(req, action, service, status, None)
            return False
        self.write_log(req, action, service, status, None)
        return keep

    # upstream side ----------------------------------------------------------------------------
    def upstream_request(self, req: Request) -> bytes:
        head = f"{req.method} {req.target} HTTP/1.1\r\n"
        has_cl = False
        drop = HOP_BY_HOP | connection_tokens(req.headers)
        for k, v in req.headers:
            lk = k.lower()
            if lk in drop:
                continue
            if lk == "content-length":
                has_cl = True
                v = str(len(req.body))
            head += f"{k}: {v}\r\n"
        if not has_cl and (req.body or req.method in ("POST", "PUT", "PATCH")):
            head += f"Content-Length: {len(req.body)}\r\n"
        head += "\r\n"
        return head.encode("latin-1") + req.body

    async def forward(self, req: Request, writer: asyncio.StreamWriter, upstream: list) -> tuple[int, bool]:
        """Send req upstream and relay the response. (status, keep client connection)."""
        data = self.upstream_request(req)
        for attempt in range(2):  # a reused upstream connection may have been closed: retry once fresh
            reused = upstream[0] is not None
            if not reused:
                try:
                    upstream[0], upstream[1] = await asyncio.wait_for(
                        asyncio.open_connection(self.up_host, self.up_port, limit=MAX_HEAD), 30)
                except (OSError, asyncio.TimeoutError) as e:
                    close_upstream(upstream)
                    raise UpstreamError(f"connect: {e!r}") from e
            ur, uw = upstream
            try:
                uw.write(data)
                await uw.drain()
                head = await asyncio.wait_for(read_response_head(ur), UPSTREAM_TIMEOUT)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, BadRequest) as e:
                close_upstream(upstream)
                if reused and attempt == 0 and not isinstance(e, asyncio.TimeoutError):
                    continue
                raise UpstreamError(f"no response: {e!r}") from e
            break
        else:  # pragma: no cover - the loop always breaks or raises
            raise UpstreamError("no response")
        return await self.relay(req, head, writer, upstream)

    async def relay(self, req: Request, head: tuple[str, int, str, list[tuple[str, str]]],
                    writer: asyncio.StreamWriter, upstream: list) -> tuple[int, bool]:
        version, status, reason, headers = head
        ur = upstream[0]
        up_tokens = connection_tokens(headers)
        up_keep = "close" not in up_tokens and version == "HTTP/1.1"
        no_body = req.method == "HEAD" or 100 <= status < 200 or status in (204, 304)
        chunked = not no_body and is_chunked(headers)
        cl_text = get_header(headers, "content-length")
        length = None
        if not no_body and not chunked and cl_text is not None:
            try:
                length = int(cl_text)
            except ValueError:
                length = None
        close_delimited = not no_body and not chunked and length is None
        keep_client = req.keep_alive

        body = b""
        if close_delimited:
            try:
                body = await asyncio.wait_for(ur.read(), UPSTREAM_TIMEOUT)
            except (ConnectionError, asyncio.TimeoutError) as e:
                close_upstream(upstream)
                raise UpstreamError(f"reading body: {e!r}") from e
            up_keep = False

        out = f"HTTP/1.1 {status} {reason}\r\n"
        drop = (HOP_BY_HOP - {"transfer-encoding", "trailer"}) | up_tokens
        for k, v in headers:
            lk = k.lower()
            if lk in drop:
                continue
            if close_delimited and lk == "content-length":
                continue
            out += f"{k}: {v}\r\n"
        if close_delimited:
            out += f"Content-Length: {len(body)}\r\n"
        if not keep_client:
            out += "Connection: close\r\n"
        elif req.version == "HTTP/1.0":
            out += "Connection: keep-alive\r\n"
        out += "\r\n"
        writer.write(out.encode("latin-1"))
        if close_delimited:
            writer.write(body)
        try:
            if chunked:
                await self.copy_chunked(ur, writer)
            elif length:
                remaining = length
                for _ in range(length // COPY_CHUNK + 2):
                    if remaining <= 0:
                        break
                    piece = await asyncio.wait_for(ur.read(min(COPY_CHUNK, remaining)), UPSTREAM_TIMEOUT)
                    if not piece:
                        raise asyncio.IncompleteReadError(b"", remaining)
                    writer.write(piece)
                    remaining -= len(piece)
                    await writer.drain()
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, BadRequest) as e:
            # the response head is already out: the client connection cannot be saved
            close_upstream(upstream)
            raise UpstreamError(f"relaying body: {e!r}", sent_nothing=False) from e
        if not up_keep:
            close_upstream(upstream)
        return status, keep_client

    async def copy_chunked(self, ur: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(10_000_000):  # bounded by the body; each pass consumes a chunk
            line = await asyncio.wait_for(ur.readuntil(b"\r\n"), UPSTREAM_TIMEOUT)
            writer.write(line)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as e:
                raise BadRequest(f"bad chunk size in response: {line!r}") from e
            if size == 0:
                for _ in range(10_000):
                    trailer = await asyncio.wait_for(ur.readuntil(b"\r\n"), UPSTREAM_TIMEOUT)
                    writer.write(trailer)
                    if trailer == b"\r\n":
                        return
                raise BadRequest("too many trailers")
            remaining = size + 2  # data + CRLF
            for _ in range(remaining // COPY_CHUNK + 2):
                if remaining <= 0:
                    break
                piece = await asyncio.wait_for(ur.read(min(COPY_CHUNK, remaining)), UPSTREAM_TIMEOUT)
                if not piece:
                    raise asyncio.IncompleteReadError(b"", remaining)
                writer.write(piece)
                remaining -= len(piece)
            await writer.drain()
        raise BadRequest("too many chunks")


async def read_response_head(reader: asyncio.StreamReader) -> tuple[str, int, str, list[tuple[str, str]]]:
    """The final response head (interim 1xx responses other than 101 are skipped)."""
    for _ in range(100):
        raw = await read_head(reader)
        if raw is None:
            raise asyncio.IncompleteReadError(b"", None)
        first, headers = parse_head(raw)
        parts = first.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise BadRequest(f"bad status line {first!r}")
        status = int(parts[1])
        if 100 <= status < 200 and status != 101:
            continue
        return parts[0], status, (parts[2] if len(parts) > 2 else ""), headers
    raise BadRequest("too many interim responses")


def close_upstream(upstream: list) -> None:
    if upstream[1] is not None:
        try:
            upstream[1].close()
        except Exception:
            pass
    upstream[0] = upstream[1] = None


def abort(writer: asyncio.StreamWriter) -> None:
    """Close abruptly: SO_LINGER 0, so the peer sees a TCP RST instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


async def main_async(args: argparse.Namespace) -> None:
    proxy = Proxy(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await proxy.handle_client(r, w)

    server = await asyncio.start_server(on_client, "127.0.0.1", args.port, limit=MAX_HEAD, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    sys.stdout = sys.stderr  # stdout holds that one line only
    async with server:
        await stop.wait()
        server.close()
        for task in list(proxy.tasks):
            task.cancel()
        if proxy.tasks:
            await asyncio.wait(list(proxy.tasks), timeout=5)
    if proxy.log:
        proxy.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the emulator, http://127.0.0.1:PORT")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=100.0, help="latency added to every request")
    parser.add_argument("--create-stack-delay-ms", type=float, default=3000.0,
                        help="extra latency on CloudFormation CreateStack")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="probability of an injected 503")
    parser.add_argument("--reset-rate", type=float, default=0.0, help="probability of a connection reset")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault draws")
    parser.add_argument("--log", default=None, help="append one JSON line per request to this file")
    parser.add_argument("--conflicts", type=int, default=0,
                        help="answer the first N conditional S3 writes 409 ConditionalRequestConflict")
    parser.add_argument("--hold", action="append", default=[], metavar="ACTION=MS",
                        help="delay the first request of ACTION by MS more milliseconds (repeatable)")
    args = parser.parse_args()
    for name in ("fail_rate", "reset_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be within [0, 1]")
    if args.fail_rate + args.reset_rate > 1.0:
        parser.error("--fail-rate + --reset-rate must not exceed 1")
    if args.delay_ms < 0 or args.create_stack_delay_ms < 0:
        parser.error("delays must not be negative")
    for spec in args.hold:
        action, eq, ms = spec.rpartition("=")
        try:
            ok = bool(eq and action) and float(ms) >= 0
        except ValueError:
            ok = False
        if not ok:
            parser.error(f"--hold {spec!r}: write ACTION=MS, e.g. --hold 'PUT ?policy=3000'")
    if args.conflicts < 0:
        parser.error("--conflicts must not be negative")
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
