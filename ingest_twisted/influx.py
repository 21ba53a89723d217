"""A Twisted-native InfluxDB HTTP client (treq) for the three API flavours.

``v1``: ``/write?db=&rp=&precision=`` and ``/query`` (InfluxDB 1.x, optional
basic auth); ``v2``: ``/api/v2/write?bucket=&org=`` with ``Authorization:
Token`` (InfluxQL through the ``/query`` compatibility endpoint); ``v3``:
``/api/v3/write_lp?db=`` and ``/api/v3/query_influxql`` with ``Authorization:
Bearer``.

Errors are classified for the writer: ``InfluxRetryableError`` (connection
refused or lost, timeouts, 5xx, 429: try the same batch again later),
``InfluxBadRequestError`` (400/413/422: the data itself is refused, e.g. a
field type conflict; InfluxDB has already stored the valid lines of a partial
write), ``InfluxNotFoundError`` (404: database or bucket missing; create it and
retry) and ``InfluxAuthError`` (401/403).
"""

from __future__ import annotations

import gzip
import json
import re
from base64 import b64encode
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import treq
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.iweb import IResponse

__all__ = [
    "InfluxAuthError",
    "InfluxBadRequestError",
    "InfluxClient",
    "InfluxConnectionError",
    "InfluxError",
    "InfluxNotFoundError",
    "InfluxPermanentError",
    "InfluxQueryError",
    "InfluxRetryableError",
    "InfluxTimeoutError",
    "RetentionPolicy",
    "duration_seconds",
    "quote_ident",
]

Api = Literal["v1", "v2", "v3"]
Precision = Literal["ns", "us", "ms", "s"]

# Each flavour spells precision differently; InfluxDB 1.6 silently reads an
# unknown value such as "us" as nanoseconds, so never pass ours through.
_PRECISION: dict[str, dict[str, str]] = {
    "v1": {"ns": "ns", "us": "u", "ms": "ms", "s": "s"},
    "v2": {"ns": "ns", "us": "us", "ms": "ms", "s": "s"},
    "v3": {"ns": "nanosecond", "us": "microsecond", "ms": "millisecond", "s": "second"},
}
_WRITE_PATH = {"v1": "/write", "v2": "/api/v2/write", "v3": "/api/v3/write_lp"}
_CONNECTION_ERRORS = (
    ConnectError,
    ConnectionClosed,
    ResponseFailed,
    ResponseNeverReceived,
    RequestTransmissionFailed,
)
_DURATION = re.compile(r"(\d+)(ns|us|µs|u|ms|s|m|h|d|w)")
_DURATION_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "u": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800
}


class InfluxError(Exception):
    """Any failure talking to InfluxDB; ``status`` is the HTTP code when there was a response."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class InfluxRetryableError(InfluxError):
    """Transient: the same request may succeed later. ``retry_after`` (s) if the server said so."""

    def __init__(
        self, message: str, status: int | None = None, body: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, status, body)
        self.retry_after = retry_after


class InfluxConnectionError(InfluxRetryableError):
    """No connection, or it broke before a response arrived."""


class InfluxTimeoutError(InfluxRetryableError):
    """No complete response within the client's timeout."""


class InfluxPermanentError(InfluxError):
    """Repeating the same request unchanged will fail the same way."""


class InfluxBadRequestError(InfluxPermanentError):
    """400/413/422: the request body is refused (bad line protocol, field type conflict, too large)."""


class InfluxNotFoundError(InfluxPermanentError):
    """404: the database or bucket does not exist (until someone creates it)."""


class InfluxAuthError(InfluxPermanentError):
    """401/403: credentials missing, wrong, or without permission."""


class InfluxQueryError(InfluxPermanentError):
    """A query statement failed (InfluxDB 1.x reports this in a 200 response)."""


@dataclass(frozen=True)
class RetentionPolicy:
    """An InfluxDB 1.x retention policy; for v2/v3 only the default one's duration is used."""

    name: str
    duration: str  # InfluxQL duration: "30d", "52w", "INF"
    replication: int = 1
    shard_duration: str | None = None
    default: bool = False


def quote_ident(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_literal(value: str) -> str:
    """An InfluxQL single-quoted string."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def duration_seconds(duration: str) -> int:
    """Seconds in an InfluxQL duration such as ``30d`` or ``1h30m``; 0 for ``INF``."""
    if duration.upper() == "INF":
        return 0
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not an InfluxQL duration: {duration!r}")
    return int(sum(int(n) * _DURATION_SECONDS[u] for n, u in parts))


class InfluxClient:
    """Writes line protocol and runs queries over a persistent connection pool.

    Every method returns a Deferred (awaitable) and is bounded by ``timeout``
    seconds (request and response body together).
    """

    def __init__(
        self,
        url: str,
        database: str,
        *,
        api: Api = "v1",
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        org: str | None = None,
        precision: Precision = "ns",
        gzip_body: bool = False,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_connections: int = 2,
        retention_policies: Sequence[RetentionPolicy] = (),
        reactor: Any = None,
    ) -> None:
        if api not in _WRITE_PATH:
            raise ValueError(f"api must be v1, v2 or v3, not {api!r}")
        if precision not in _PRECISION[api]:
            raise ValueError(f"precision must be one of ns, us, ms, s, not {precision!r}")
        if api == "v2" and not org:
            raise ValueError("api v2 needs org")
        if reactor is None:
            from twisted.internet import reactor
        self.url = url.rstrip("/")
        self.database = database
        self.api = api
        self.retention_policy = retention_policy
        self.org = org
        self.precision = precision
        self.gzip_body = gzip_body
        self.timeout = timeout
        self.retention_policies = tuple(retention_policies)
        self._reactor = reactor
        self._headers: dict[str, str] = {}
        if api == "v1" and username is not None:
            basic = b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {basic}"
        elif api in ("v2", "v3") and token:
            self._headers["Authorization"] = f"{'Token' if api == 'v2' else 'Bearer'} {token}"
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = max_connections
        self._http = treq.client.HTTPClient(Agent(reactor, connectTimeout=connect_timeout, pool=self._pool))

    # -- public API ----------------------------------------------------------

    def write(self, lines: bytes, precision: Precision | None = None) -> Deferred[None]:
        """POST newline-separated line protocol; fires None on 2xx, fails with an InfluxError."""
        return self._bounded(self._write(lines, precision or self.precision))

    def query(self, q: str, db: str | None = None, epoch: str | None = None) -> Deferred[Any]:
        """Run InfluxQL; fires with the parsed JSON (v1/v2: ``{"results": [...]}``, v3: a list of rows).

        A failed statement raises InfluxQueryError.
        """
        return self._bounded(self._query(q, db, epoch))

    def ping(self) -> Deferred[str]:
        """Check the server answers; fires with its version ("" if it does not say)."""
        return self._bounded(self._ping())

    def ensure_database(
        self, db: str | None = None, retention_policies: Sequence[RetentionPolicy] | None = None
    ) -> Deferred[None]:
        """Create the database (bucket) and retention policies if missing; alter policies that differ."""
        rps = self.retention_policies if retention_policies is None else tuple(retention_policies)
        return self._bounded(self._ensure_database(db or self.database, rps))

    def close(self) -> Deferred[None]:
        """Close pooled connections."""
        return self._pool.closeCachedConnections()

    # -- implementation ------------------------------------------------------

    def _bounded(self, coro: Coroutine[Any, Any, Any]) -> Deferred[Any]:
        d = Deferred.fromCoroutine(coro)
        d.addTimeout(self.timeout, self._reactor, onTimeoutCancel=self._timed_out)
        return d

    def _timed_out(self, result: Any, timeout: float) -> None:
        raise InfluxTimeoutError(f"InfluxDB {self.url}: no response within {timeout} s")

    async def _write(self, lines: bytes, precision: str) -> None:
        params: dict[str, str] = {"precision": _PRECISION[self.api][precision]}
        if self.api == "v2":
            params.update(bucket=self.database, org=self.org or "")
        else:
            params["db"] = self.database
            if self.api == "v1" and self.retention_policy:
                params["rp"] = self.retention_policy
        headers = {**self._headers, "Content-Type": "text/plain; charset=utf-8"}
        if self.gzip_body:
            lines = gzip.compress(lines, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        await self._request("POST", _WRITE_PATH[self.api], params, lines, headers)

    async def _query(self, q: str, db: str | None, epoch: str | None) -> Any:
        params = {"q": q}
        if db or self.database:
            params["db"] = db or self.database
        if epoch:
            params["epoch"] = epoch
        if self.api == "v3":
            params["format"] = "json"
            body = await self._request("GET", "/api/v3/query_influxql", params, None, self._headers)
            return json.loads(body)
        headers = {**self._headers, "Content-Type": "application/x-www-form-urlencoded"}
        body = await self._request("POST", "/query", {}, urlencode(params).encode(), headers)
        result = json.loads(body)
        errors = [r["error"] for r in result.get("results", []) if "error" in r]
        if "error" in result:
            errors.append(result["error"])
        if errors:
            raise InfluxQueryError(f"{q!r}: {'; '.join(errors)}", 200, body.decode(errors="replace"))
        return result

    async def _ping(self) -> str:
        response, _body = await self._response("GET", "/ping", {}, None, self._headers)
        return (response.headers.getRawHeaders("X-Influxdb-Version") or [""])[0]

    async def _ensure_database(self, db: str, rps: Sequence[RetentionPolicy]) -> None:
        if self.api == "v1":
            await self._query(f"CREATE DATABASE {quote_ident(db)}", None, None)
            for rp in rps:
                await self._ensure_retention_policy(db, rp)
            return
        default = next((rp for rp in rps if rp.default), rps[0] if rps else None)
        headers = {**self._headers, "Content-Type": "application/json"}
        if self.api == "v2":
            orgs = json.loads(await self._request("GET", "/api/v2/orgs", {"org": self.org or ""}, None, self._headers))
            if not orgs.get("orgs"):
                raise InfluxNotFoundError(f"organization {self.org!r} not found", 404)
            rules = []
            if default is not None and duration_seconds(default.duration):
                rules = [{"type": "expire", "everySeconds": duration_seconds(default.duration)}]
            spec = {"orgID": orgs["orgs"][0]["id"], "name": db, "retentionRules": rules}
            path = "/api/v2/buckets"
        else:
            spec = {"db": db}
            if default is not None and duration_seconds(default.duration):
                spec["retention_period"] = default.duration
            path = "/api/v3/configure/database"
        try:
            await self._request("POST", path, {}, json.dumps(spec).encode(), headers)
        except InfluxPermanentError as exc:
            if exc.status not in (409, 422) or "exist" not in exc.body.lower():
                raise

    async def _ensure_retention_policy(self, db: str, rp: RetentionPolicy) -> None:
        spec = f"ON {quote_ident(db)} DURATION {rp.duration} REPLICATION {rp.replication}"
        if rp.shard_duration:
            spec += f" SHARD DURATION {rp.shard_duration}"
        if rp.default:
            spec += " DEFAULT"
        try:
            await self._query(f"CREATE RETENTION POLICY {quote_ident(rp.name)} {spec}", None, None)
        except InfluxQueryError as exc:
            if "already exists" not in str(exc):
                raise
            await self._query(f"ALTER RETENTION POLICY {quote_ident(rp.name)} {spec}", None, None)

    async def _request(
        self, method: str, path: str, params: dict[str, str], data: bytes | None, headers: dict[str, str]
    ) -> bytes:
        return (await self._response(method, path, params, data, headers))[1]

    async def _response(
        self, method: str, path: str, params: dict[str, str], data: bytes | None, headers: dict[str, str]
    ) -> tuple[IResponse, bytes]:
        url = self.url + path + ("?" + urlencode(params) if params else "")
        try:
            response = await self._http.request(method, url, data=data, headers=headers)
            body = await treq.content(response)
        except _CONNECTION_ERRORS as exc:
            raise InfluxConnectionError(f"InfluxDB {self.url}: {_describe(exc)}") from exc
        if response.code >= 300:
            raise _status_error(response, body, f"{method} {path}")
        return response, body


def _describe(exc: Exception) -> str:
    reasons = getattr(exc, "reasons", None)
    if reasons:
        return "; ".join(str(r.value) for r in reasons)
    return str(exc) or type(exc).__name__


def _status_error(response: IResponse, body: bytes, what: str) -> InfluxError:
    text = body.decode(errors="replace").strip()
    try:
        decoded = json.loads(text)
        detail = decoded.get("error") or decoded.get("message") or text
    except (ValueError, AttributeError):
        detail = text
    code = response.code
    message = f"{what}: HTTP {code}: {detail}"
    if code == 429 or code >= 500:
        retry_after = None
        header = response.headers.getRawHeaders("Retry-After")
        if header:
            try:
                retry_after = float(header[0])
            except ValueError:
                pass
        return InfluxRetryableError(message, code, text, retry_after)
    if code in (400, 413, 422):
        return InfluxBadRequestError(message, code, text)
    if code == 404:
        return InfluxNotFoundError(message, code, text)
    if code in (401, 403):
        return InfluxAuthError(message, code, text)
    return InfluxPermanentError(message, code, text)
