"""InfluxClient against a real InfluxDB 1.6, plus a recording fake for the v2/v3 wire format and errors."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
from gkjk.influxd import InfluxServer, free_port
from twisted.internet import protocol, reactor
from twisted.web import resource, server

from ingest_twisted.influx import (
    InfluxAuthError,
    InfluxBadRequestError,
    InfluxClient,
    InfluxConnectionError,
    InfluxNotFoundError,
    InfluxPermanentError,
    InfluxQueryError,
    InfluxRetryableError,
    InfluxTimeoutError,
    RetentionPolicy,
    duration_seconds,
    quote_ident,
)


@pytest_twisted.async_yield_fixture
async def client_for() -> AsyncIterator[Callable[..., InfluxClient]]:
    clients: list[InfluxClient] = []

    def make(*args: Any, **kwargs: Any) -> InfluxClient:
        clients.append(InfluxClient(*args, **kwargs))
        return clients[-1]

    yield make
    for c in clients:
        await c.close()


# -- against the real server ------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_ping_write_query(influx_db: tuple[InfluxServer, str], client_for: Callable[..., InfluxClient]) -> None:
    srv, db = influx_db
    client = client_for(srv.url, db)
    assert (await client.ping()).startswith("1.")
    now = time.time_ns()
    await client.write(b"m,t=a v=1.5 %d\nm,t=b v=2.5 %d" % (now, now))
    result = await client.query("SELECT sum(v) FROM m")
    assert result["results"][0]["series"][0]["values"][0][1] == 4.0


@pytest.mark.parametrize(("precision", "scale"), [("s", 10**9), ("ms", 10**6), ("us", 10**3), ("ns", 1)])
@pytest_twisted.ensureDeferred
async def test_precision(
    influx_db: tuple[InfluxServer, str], client_for: Callable[..., InfluxClient], precision: str, scale: int
) -> None:
    srv, db = influx_db
    client = client_for(srv.url, db, precision=precision)
    ts = 1_700_000_000_123_456_789 // scale
    await client.write(b"m v=1 %d" % ts)
    result = await client.query("SELECT v FROM m", epoch="ns")
    assert result["results"][0]["series"][0]["values"][0][0] == ts * scale


@pytest_twisted.ensureDeferred
async def test_gzip_body(influx_db: tuple[InfluxServer, str], client_for: Callable[..., InfluxClient]) -> None:
    srv, db = influx_db
    client = client_for(srv.url, db, gzip_body=True)
    now = time.time_ns()
    await client.write(b"\n".join(b"m,i=%d v=%d.0 %d" % (i, i, now) for i in range(1000)))
    assert srv.count(db, "m") == 1000


@pytest_twisted.ensureDeferred
async def test_ensure_database_and_retention_policies(
    influxdb: InfluxServer, client_for: Callable[..., InfluxClient]
) -> None:
    db = f"ens_{uuid.uuid4().hex[:8]}"
    rps = [RetentionPolicy("month", "30d", default=True), RetentionPolicy("week", "7d", shard_duration="1d")]
    client = client_for(influxdb.url, db, retention_policies=rps)
    now = time.time_ns()
    with pytest.raises(InfluxNotFoundError):
        await client.write(b"m v=1 %d" % now)
    await client.ensure_database()
    await client.ensure_database()  # idempotent
    await client.ensure_database(retention_policies=[RetentionPolicy("month", "60d", default=True)])  # altered
    try:
        policies = (await client.query("SHOW RETENTION POLICIES"))["results"][0]["series"][0]["values"]
        by_name = {p[0]: p for p in policies}
        assert by_name["month"][1] == "1440h0m0s" and by_name["month"][4] is True
        assert by_name["week"][1] == "168h0m0s" and by_name["week"][2] == "24h0m0s"
        await client.write(b"m v=1 %d" % now)
        # Written to the default policy, which is no longer autogen.
        assert "series" not in influxdb.query('SELECT count(v) FROM "autogen".m', db=db)["results"][0]
        assert influxdb.query('SELECT count(v) FROM "month".m', db=db)["results"][0]["series"][0]["values"][0][1] == 1
    finally:
        influxdb.query(f"DROP DATABASE {quote_ident(db)}")


@pytest_twisted.ensureDeferred
async def test_field_type_conflict_is_permanent(
    influx_db: tuple[InfluxServer, str], client_for: Callable[..., InfluxClient]
) -> None:
    srv, db = influx_db
    client = client_for(srv.url, db)
    now = time.time_ns()
    await client.write(b"m v=1.0 %d" % now)
    with pytest.raises(InfluxBadRequestError, match="field type conflict") as info:
        await client.write(b"m v=2i %d\nm v=3.0 %d" % (now + 1, now + 2))
    assert isinstance(info.value, InfluxPermanentError)
    assert not isinstance(info.value, InfluxRetryableError)
    assert info.value.status == 400
    assert srv.count(db, "m") == 2  # the valid line of the partial write was stored


@pytest_twisted.ensureDeferred
async def test_unparsable_line_is_bad_request(
    influx_db: tuple[InfluxServer, str], client_for: Callable[..., InfluxClient]
) -> None:
    srv, db = influx_db
    with pytest.raises(InfluxBadRequestError, match="unable to parse"):
        await client_for(srv.url, db).write(b"no fields here")


@pytest_twisted.ensureDeferred
async def test_bad_query(influx_db: tuple[InfluxServer, str], client_for: Callable[..., InfluxClient]) -> None:
    srv, db = influx_db
    client = client_for(srv.url, db)
    with pytest.raises(InfluxBadRequestError):
        await client.query("SELECT FROM")
    with pytest.raises(InfluxQueryError, match="database not found"):
        await client.query("SELECT * FROM m", db="no_such_db")


@pytest_twisted.ensureDeferred
async def test_connection_refused_is_retryable(client_for: Callable[..., InfluxClient]) -> None:
    client = client_for(f"http://127.0.0.1:{free_port()}", "db")
    with pytest.raises(InfluxConnectionError) as info:
        await client.write(b"m v=1 1")
    assert isinstance(info.value, InfluxRetryableError)


@pytest_twisted.ensureDeferred
async def test_server_that_never_answers_times_out(client_for: Callable[..., InfluxClient]) -> None:
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(protocol.Protocol), interface="127.0.0.1")
    try:
        client = client_for(f"http://127.0.0.1:{port.getHost().port}", "db", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(InfluxTimeoutError):
            await client.write(b"m v=1 1")
        assert time.monotonic() - started < 2
    finally:
        await port.stopListening()


# -- wire format and status mapping, against a recording fake ---------------


@dataclass
class Recorded:
    method: str
    path: str
    args: dict[str, str]
    headers: dict[str, str]
    body: bytes


class FakeInflux(resource.Resource):
    """Answers every request with the next canned (status, body, headers), recording what it got."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.url = ""
        self.replies: list[tuple[int, bytes, dict[str, str]]] = []
        self.requests: list[Recorded] = []

    def render(self, request: Any) -> bytes:
        self.requests.append(
            Recorded(
                request.method.decode(),
                request.path.decode(),
                {k.decode(): v[0].decode() for k, v in request.args.items()},
                {k.decode().lower(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()},
                request.content.read(),
            )
        )
        status, body, headers = self.replies.pop(0) if self.replies else (204, b"", {})
        request.setResponseCode(status)
        for k, v in headers.items():
            request.setHeader(k, v)
        return body


@pytest_twisted.async_yield_fixture
async def fake() -> AsyncIterator[FakeInflux]:
    site = FakeInflux()
    port = reactor.listenTCP(0, server.Site(site), interface="127.0.0.1")
    site.url = f"http://127.0.0.1:{port.getHost().port}"
    yield site
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_v1_wire_format(fake: FakeInflux, client_for: Callable[..., InfluxClient]) -> None:
    client = client_for(fake.url, "db1", retention_policy="rp1", username="u", password="p", precision="us")
    await client.write(b"m v=1 1")
    [req] = fake.requests
    assert (req.method, req.path) == ("POST", "/write")
    assert req.args == {"db": "db1", "rp": "rp1", "precision": "u"}
    assert req.headers["authorization"] == "Basic dTpw"
    assert req.body == b"m v=1 1"


@pytest_twisted.ensureDeferred
async def test_v2_wire_format(fake: FakeInflux, client_for: Callable[..., InfluxClient]) -> None:
    client = client_for(fake.url, "bucket1", api="v2", org="org1", token="tok", gzip_body=True, precision="ms")
    await client.write(b"m v=1 1")
    fake.replies = [
        (200, json.dumps({"orgs": [{"id": "0123"}]}).encode(), {}),
        (422, b'{"code":"conflict","message":"bucket with name bucket1 already exists"}', {}),
    ]
    await client.ensure_database(retention_policies=[RetentionPolicy("autogen", "30d", default=True)])
    write, orgs, create = fake.requests
    assert (write.path, write.args) == ("/api/v2/write", {"bucket": "bucket1", "org": "org1", "precision": "ms"})
    assert write.headers["authorization"] == "Token tok"
    assert write.headers["content-encoding"] == "gzip"
    assert gzip.decompress(write.body) == b"m v=1 1"
    assert (orgs.method, orgs.path, orgs.args) == ("GET", "/api/v2/orgs", {"org": "org1"})
    assert create.path == "/api/v2/buckets"
    assert json.loads(create.body) == {
        "orgID": "0123",
        "name": "bucket1",
        "retentionRules": [{"type": "expire", "everySeconds": 30 * 86400}],
    }


@pytest_twisted.ensureDeferred
async def test_v3_wire_format(fake: FakeInflux, client_for: Callable[..., InfluxClient]) -> None:
    client = client_for(fake.url, "db3", api="v3", token="tok", precision="s")
    await client.write(b"m v=1 1")
    fake.replies = [(409, b'{"error":"attempted to create a resource that already exists"}', {}), (200, b"[]", {})]
    await client.ensure_database()
    assert await client.query("SELECT 1") == []
    write, create, query = fake.requests
    assert (write.path, write.args) == ("/api/v3/write_lp", {"db": "db3", "precision": "second"})
    assert write.headers["authorization"] == "Bearer tok"
    assert (create.path, json.loads(create.body)) == ("/api/v3/configure/database", {"db": "db3"})
    assert (query.method, query.path) == ("GET", "/api/v3/query_influxql")
    assert query.args == {"q": "SELECT 1", "db": "db3", "format": "json"}


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "retry_after"),
    [
        (500, b'{"error":"timeout"}', {}, InfluxRetryableError, None),
        (503, b"overloaded", {"Retry-After": "7"}, InfluxRetryableError, 7.0),
        (429, b'{"code":"too many requests"}', {"Retry-After": "2"}, InfluxRetryableError, 2.0),
        (400, b'{"error":"unable to parse"}', {}, InfluxBadRequestError, None),
        (413, b'{"error":"Request Entity Too Large"}', {}, InfluxBadRequestError, None),
        (422, b'{"code":"unprocessable entity"}', {}, InfluxBadRequestError, None),
        (401, b'{"error":"authorization failed"}', {}, InfluxAuthError, None),
        (403, b"forbidden", {}, InfluxAuthError, None),
        (404, b'{"error":"database not found: \\"x\\""}', {}, InfluxNotFoundError, None),
        (405, b"", {}, InfluxPermanentError, None),
    ],
)
@pytest_twisted.ensureDeferred
async def test_status_classification(
    fake: FakeInflux,
    client_for: Callable[..., InfluxClient],
    status: int,
    body: bytes,
    headers: dict[str, str],
    error: type[Exception],
    retry_after: float | None,
) -> None:
    fake.replies = [(status, body, headers)]
    with pytest.raises(error) as info:
        await client_for(fake.url, "x").write(b"m v=1 1")
    assert info.value.status == status
    assert isinstance(info.value, InfluxRetryableError) == (status >= 500 or status == 429)
    if retry_after is not None:
        assert info.value.retry_after == retry_after


def test_duration_seconds() -> None:
    assert duration_seconds("30d") == 30 * 86400
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("INF") == 0
    with pytest.raises(ValueError):
        duration_seconds("30 days")


def test_quote_ident() -> None:
    assert quote_ident('we"ird\\db') == '"we\\"ird\\\\db"'


def test_bad_configuration() -> None:
    with pytest.raises(ValueError):
        InfluxClient("http://x", "db", api="v4")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        InfluxClient("http://x", "db", precision="m")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        InfluxClient("http://x", "db", api="v2")
