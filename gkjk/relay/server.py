"""The relay's HTTP interface (twisted.web): POST /grafana/<recipient> for Grafana, GET /healthz for monitors."""

from __future__ import annotations

import hmac
import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from gkjk.relay.grafana import PayloadError, parse_notification
from gkjk.relay.intake import Accepted, Intake
from gkjk.relay.metrics import IntakeCounters
from gkjk.relay.outbox import Outbox
from gkjk.relay.routing import UnknownRecipient, parse_recipient

log = Logger()

MAX_BODY = 4 * 1024 * 1024  # Grafana groups alerts; a few MB is thousands of them


def _json(request: Request, status: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    return json.dumps(body, ensure_ascii=False).encode()


class GrafanaWebhook(Resource):
    """Authenticates (Authorization: Bearer <token>), parses, and answers 200 once the messages are queued.
    Counts every request and its answer (`counters`, the self-metrics)."""

    isLeaf = True

    def __init__(self, intake: Intake, token: str, counters: IntakeCounters | None = None) -> None:
        super().__init__()
        self.intake = intake
        self.expected = f"Bearer {token}".encode()
        self.counters = counters if counters is not None else IntakeCounters()

    def _deny(self, request: Request, status: int, body: dict[str, Any]) -> bytes:
        self.counters.refused[status] += 1
        return _json(request, status, body)

    def render_POST(self, request: Request) -> bytes | int:
        self.counters.requests += 1
        given = request.getHeader(b"Authorization") or b""
        if not isinstance(given, bytes):
            given = given.encode()
        if not hmac.compare_digest(given, self.expected):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="gkjk relay"')
            log.warn("401 for {path} from {peer}", path=request.uri.decode(errors="replace"),
                     peer=request.getClientAddress().host)
            return self._deny(request, 401, {"error": "missing or wrong bearer token"})
        try:
            recipient = parse_recipient([s.decode("utf-8") for s in request.postpath])
        except (UnknownRecipient, UnicodeDecodeError) as exc:
            return self._deny(request, 404, {"error": str(exc)})
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return self._deny(request, 413, {"error": f"body larger than {MAX_BODY} bytes"})
        try:
            alerts = parse_notification(body)
        except PayloadError as exc:
            return self._deny(request, 400, {"error": f"not a Grafana webhook notification: {exc}"})
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def respond(body: bytes) -> None:
            if not gone:  # Grafana may have given up waiting; the messages are queued all the same
                request.write(body)
                request.finish()

        accepted = Deferred.fromCoroutine(self.intake.accept(recipient, alerts))
        accepted.addCallbacks(self._accepted, self._refused, callbackArgs=(request,), errbackArgs=(request,))
        accepted.addCallback(respond)
        return NOT_DONE_YET

    def _accepted(self, accepted: Accepted, request: Request) -> bytes:
        self.counters.accepted += 1
        self.counters.queued += accepted.queued
        self.counters.duplicates += accepted.duplicates
        return _json(request, 200, {"queued": accepted.queued, "duplicates": accepted.duplicates})

    def _refused(self, failure: Failure, request: Request) -> bytes:
        if failure.check(UnknownRecipient):
            log.error("{error}", error=str(failure.value))
            return self._deny(request, 404, {"error": str(failure.value)})
        log.failure("notification not queued; Grafana will retry", failure)
        return self._deny(request, 503, {"error": f"not queued: {failure.value}"})


class Health(Resource):
    """200 with the outbox's counts while the relay runs."""

    isLeaf = True

    def __init__(self, outbox: Outbox, dry_run: bool) -> None:
        super().__init__()
        self.outbox = outbox
        self.dry_run = dry_run

    def render_GET(self, request: Request) -> bytes:
        return _json(request, 200, {"status": "ok", "dry_run": self.dry_run, **self.outbox.counts()})


class QuietSite(Site):
    """No access log: health checks would flood it; notifications are logged by the intake."""

    def log(self, request: Request) -> None:
        pass


def site(intake: Intake, outbox: Outbox, token: str, dry_run: bool, counters: IntakeCounters | None = None) -> Site:
    root = Resource()
    root.putChild(b"grafana", GrafanaWebhook(intake, token, counters))
    root.putChild(b"healthz", Health(outbox, dry_run))
    return QuietSite(root)
