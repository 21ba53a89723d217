"""The ingest server end to end: real `gkjk serve` process, real TCP, real InfluxDB."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ingest_twisted.hj212 import sm4
from ingest_twisted.hj212.frame import encode_frame
from ingest_twisted.hj212.packet import build_segment
from ingest_twisted.metrics import AckLatency
from gkjk_process import COATING_MN, COATING_PW, FOUNDRY_MN, TEST_REGISTRY, Logger, ServerProcess


def rows(influx, db: str, query: str) -> list[dict]:
    """Result rows of an InfluxQL query as dicts (empty when there is no series)."""
    result = influx.query(query, db=db)["results"][0]
    out = []
    for series in result.get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values))
            row.update(series.get("tags", {}))
            out.append(row)
    return out


def wait_rows(influx, db: str, query: str, count: int = 1, timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = rows(influx, db, query)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture
def server(tmp_path, influx_db):
    influx, db = influx_db
    with ServerProcess(tmp_path / "server", influx.url, db, spool={"flush_interval": 0.05}) as process:
        yield process




MOMENT = datetime(2026, 11, 23, 10, 0, 0)


def test_upload_is_acknowledged_and_stored_with_registry_tags(server, influx, db):
    logger = Logger(server.port)
    sent = logger.send(logger.packet("2011", MOMENT, {
        "i33200": {"Rtd": "512.5", "Flag": "N"},
        "g10201": {"Rtd": "41.2", "Flag": "N"},
    }))
    [ack] = logger.read(1)
    assert (ack.cn, ack.qn, ack.st, ack.flag) == ("9014", sent.qn, "91", 4)
    assert ack.mn == FOUNDRY_MN
    furnace = wait_rows(influx, db, f"SELECT * FROM rtd WHERE mn = '{FOUNDRY_MN}' AND fac = 'P1'")
    fan = wait_rows(influx, db, f"SELECT * FROM rtd WHERE mn = '{FOUNDRY_MN}' AND fac = 'T1'")
    assert furnace[0]["i33200-Rtd"] == 512.5 and furnace[0]["i33200-Flag"] == "N"
    assert furnace[0]["ent"] == "91320682MA1WX0001W" and furnace[0]["county"] == "如皋市"
    assert fan[0]["g10201-Rtd"] == 41.2
    # DataTime is Beijing time: 10:00 local is 02:00 UTC.
    assert furnace[0]["time"] == "2026-11-23T02:00:00Z"


def test_unmapped_factors_are_stored_not_dropped(server, influx, db):
    logger = Logger(server.port)
    logger.send(logger.packet("2051", MOMENT, {"w01018": {"Avg": "36.91", "Flag": "N"}}))
    assert logger.read(1)[0].cn == "9014"
    [row] = wait_rows(influx, db, "SELECT * FROM minute WHERE fac = 'unmapped'")
    assert row["w01018-Avg"] == 36.91 and row["mn"] == FOUNDRY_MN


def test_no_ack_when_not_requested(server, influx, db):
    logger = Logger(server.port)
    logger.send(logger.packet("2011", MOMENT, {"i33200": {"Rtd": "1"}}, flag=4))
    assert logger.read(1, timeout=1.0) == []
    assert wait_rows(influx, db, "SELECT * FROM rtd")


def test_unknown_mn_and_wrong_password_are_refused_and_not_stored(server, influx, db):
    stranger = Logger(server.port, mn="FFFF0000000000000000FFFF", pw="000000")
    stranger.send(stranger.packet("2011", MOMENT, {"i33200": {"Rtd": "1"}}))
    [refusal] = stranger.read(1)
    assert (refusal.cn, refusal.cp.params["QnRtn"]) == ("9011", "4")
    impostor = Logger(server.port, pw="999999")
    impostor.send(impostor.packet("2011", MOMENT, {"i33200": {"Rtd": "1"}}))
    [refusal] = impostor.read(1)
    assert (refusal.cn, refusal.cp.params["QnRtn"]) == ("9011", "3")
    time.sleep(1.0)
    assert rows(influx, db, "SELECT * FROM rtd") == []


def test_bad_crc_is_answered_and_the_connection_carries_on(server, influx, db):
    logger = Logger(server.port)
    bad = logger.packet("2011", MOMENT, {"i33200": {"Rtd": "1"}})
    frame = encode_frame(build_segment(bad))
    logger.send_raw(frame[:-6] + (b"0000" if frame[-6:-2] != b"0000" else b"FFFF") + b"\r\n")
    [refusal] = logger.read(1)
    assert (refusal.cn, refusal.qn, refusal.cp.params["QnRtn"]) == ("9011", bad.qn, "9")
    good = logger.send(logger.packet("2011", MOMENT + timedelta(minutes=1), {"i33200": {"Rtd": "2"}}))
    [ack] = logger.read(1)
    assert (ack.cn, ack.qn) == ("9014", good.qn)
    stored = wait_rows(influx, db, "SELECT \"i33200-Rtd\" FROM rtd")
    assert [r["i33200-Rtd"] for r in stored] == [2.0]


def test_garbage_and_one_byte_chunks_do_not_lose_frames(server, influx, db):
    logger = Logger(server.port)
    packets = [logger.packet("2011", MOMENT + timedelta(minutes=i), {"i33200": {"Rtd": str(i)}}) for i in range(5)]
    stream = b"\x00\xffnoise##12" + b"".join(b"garbage##" + encode_frame(build_segment(p)) for p in packets)
    for i in range(len(stream)):
        logger.send_raw(stream[i:i + 1])
    acks = logger.read(5)
    assert [a.qn for a in acks] == [p.qn for p in packets]
    assert len(wait_rows(influx, db, "SELECT * FROM rtd", count=5)) == 5


def test_heartbeat_and_time_calibration_are_answered(server):
    logger = Logger(server.port, mn=COATING_MN, pw=COATING_PW)
    heartbeat = logger.send(logger.packet("9015", flag=9, st="91"))
    [heartbeat_ack] = logger.read(1)
    assert (heartbeat_ack.cn, heartbeat_ack.qn) == ("9013", heartbeat.qn)
    calibration = logger.send(logger.packet("1013", flag=9, st="44"))
    notification_ack, set_time = logger.read(2)
    assert (notification_ack.cn, notification_ack.qn) == ("9013", calibration.qn)
    assert set_time.cn == "1012" and set_time.ack_required and set_time.mn == COATING_MN
    system_time = datetime.strptime(set_time.cp.params["SystemTime"], "%Y%m%d%H%M%S")
    beijing_now = datetime.now(ZoneInfo("Asia/Shanghai")).replace(tzinfo=None)
    assert abs(system_time - beijing_now) < timedelta(minutes=1)


def test_split_packet_fragments_merge_into_one_point(server, influx, db):
    logger = Logger(server.port)
    first = logger.packet("2011", MOMENT, {"i33200": {"Rtd": "10"}}, flag=7)
    first.pnum, first.pno = 2, 1
    second = logger.packet("2011", MOMENT, {"g10201": {"Rtd": "20"}, "i33201": {"Rtd": "30"}}, flag=7)
    second.pnum, second.pno = 2, 2
    logger.send(first)
    logger.send(second)
    assert {a.qn for a in logger.read(2)} == {first.qn, second.qn}
    [furnace] = wait_rows(influx, db, "SELECT * FROM rtd WHERE fac = 'P1'")
    assert furnace["i33200-Rtd"] == 10.0 and furnace["i33201-Rtd"] == 30.0


def test_sessions_and_self_metrics_are_written(server, influx, db):
    logger = Logger(server.port)
    logger.send(logger.packet("2011", MOMENT, {"i33200": {"Rtd": "1"}}))
    logger.read(1)
    logger.close()
    events = wait_rows(influx, db, f"SELECT * FROM device_event WHERE mn = '{FOUNDRY_MN}'", count=2)
    assert [e["event"] for e in events] == ["online", "offline"]
    assert events[0]["ent"] == "91320682MA1WX0001W"
    metrics = wait_rows(influx, db, "SELECT last(frames_in), last(stored) FROM gkjk_ingest", timeout=10)
    assert metrics and metrics[0]["last"] >= 1
    # The interval that acknowledged the upload reports its ack latency (read -> 9014 written, fsync included).
    [latency] = wait_rows(influx, db, 'SELECT max("ack_latency_p99_ms") AS p99, max("ack_latency_max_ms") AS top '
                                      "FROM gkjk_ingest", timeout=10)
    assert 0 < latency["p99"] <= latency["top"] < 5000
    # The worker times its garbage collections, from the full one heap.settle() runs before serving.
    [gc_row] = wait_rows(influx, db, 'SELECT last("gc_full_collections") AS full, last("gc_seconds") AS spent '
                                     "FROM gkjk_ingest", timeout=10)
    assert gc_row["full"] >= 1 and gc_row["spent"] > 0


def test_ack_latency_percentiles_weigh_each_read_by_its_acks():
    latency = AckLatency()
    assert latency.percentiles_ms() == {}  # an interval without acks reports nothing
    latency.record(0.010, 98)  # one read of 98 uploads acknowledged after 10 ms
    latency.record(0.500, 1)
    latency.record(0.900, 1)
    found = latency.percentiles_ms()
    assert 10.0 <= found["ack_latency_p50_ms"] <= 10.2  # a bucket's upper bound: at most 2 % high
    assert 500.0 <= found["ack_latency_p99_ms"] <= 510.0
    assert found["ack_latency_max_ms"] == 900.0
    latency.reset()
    assert latency.percentiles_ms() == {}


def test_ack_latency_keeps_a_bounded_histogram_whatever_the_rate():
    latency = AckLatency()
    for i in range(200_000):
        latency.record(0.001 + (i % 1000) * 0.0005, 1)  # 1 ms .. 500 ms, evenly
    assert len(latency._weights) < 400
    found = latency.percentiles_ms()
    assert 250.5 <= found["ack_latency_p50_ms"] <= 250.5 * 1.02
    assert 495.5 <= found["ack_latency_p99_ms"] <= found["ack_latency_max_ms"] == 500.5


def test_missing_minute_records_are_requested_from_the_device(tmp_path, influx_db):
    influx, db = influx_db
    with ServerProcess(tmp_path / "s", influx.url, db, backfill={"grace_seconds": 0.2, "rate": 50.0}) as server:
        logger = Logger(server.port)
        for minutes in (0, 10, 40):
            logger.send(logger.packet("2051", MOMENT + timedelta(minutes=minutes), {"i33200": {"Avg": "1"}}))
        answers = logger.read(4, timeout=10)
        requests = [a for a in answers if a.cn == "2051"]
        assert [(r.cp.params["BeginTime"], r.cp.params["EndTime"]) for r in requests] == [
            ("20261123102000", "20261123103000")
        ]
        assert requests[0].ack_required


def test_sm4_encrypted_upload_is_decrypted_with_the_device_key(server, influx, db):
    logger = Logger(server.port, mn=COATING_MN, pw=COATING_PW)
    packet = logger.packet("2011", MOMENT, {"a01012": {"Rtd": "801.5", "Flag": "N"}}, flag=9, st="44")
    frame = sm4.encode_encrypted_frame(build_segment(packet), "30303030303030303030303030303030")
    assert b"CP=&&{0x" in frame
    logger.send_raw(frame)
    [ack] = logger.read(1)
    assert (ack.cn, ack.qn, ack.flag) == ("9014", packet.qn, 8)
    [row] = wait_rows(influx, db, f"SELECT * FROM rtd WHERE mn = '{COATING_MN}' AND fac = 'T1'")
    assert row["a01012-Rtd"] == 801.5
    wrong_key = sm4.encode_encrypted_frame(build_segment(logger.packet("2011", MOMENT, {"a01012": {"Rtd": "1"}})),
                                           "31313131313131313131313131313131")
    logger.send_raw(wrong_key)
    assert logger.read(1, timeout=1.5) == []


def worker_pids(supervisor_pid: int) -> list[int]:
    children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text().split()
    return [int(pid) for pid in children]


def test_workers_share_the_port_and_a_killed_worker_is_replaced(tmp_path, influx_db):
    influx, db = influx_db
    with ServerProcess(tmp_path / "s", influx.url, db, ingest={"workers": 2}) as server:
        deadline = time.monotonic() + 20
        while len(worker_pids(server.process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        first = worker_pids(server.process.pid)
        assert len(first) == 2
        # Both workers listening: each writes its status file once it serves.
        while not all((server.spool / f"status-{i}.json").exists() for i in (0, 1)) and time.monotonic() < deadline:
            time.sleep(0.1)
        # One connection at a time: a second connection of the same MN would replace the first.
        for n in range(20):
            logger = Logger(server.port)
            logger.send(logger.packet("2011", MOMENT + timedelta(minutes=n), {"i33200": {"Rtd": str(n)}}))
            assert logger.read(1)[0].cn == "9014"
            logger.close()
        assert len(wait_rows(influx, db, "SELECT * FROM rtd", count=20)) == 20
        time.sleep(1.5)
        served = [json.loads((server.spool / f"status-{i}.json").read_text())["frames_in"] for i in (0, 1)]
        assert sum(served) == 20 and min(served) > 0, served
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = worker_pids(server.process.pid)
            if len(now) == 2 and first[0] not in now:
                break
            time.sleep(0.1)
        assert len(now) == 2 and first[0] not in now
        late = Logger(server.port)
        late.send(late.packet("2011", MOMENT + timedelta(hours=1), {"i33200": {"Rtd": "99"}}))
        assert late.read(1)[0].cn == "9014"


def test_idle_connections_are_closed_and_per_ip_cap_refuses_extra(tmp_path, influx_db):
    influx, db = influx_db
    limits = {"idle_timeout": 1.0, "max_connections_per_ip": 2}
    with ServerProcess(tmp_path / "s", influx.url, db, ingest=limits) as server:
        first, second = Logger(server.port), Logger(server.port, mn=COATING_MN, pw=COATING_PW)
        third = Logger(server.port)
        third.sock.settimeout(5)
        assert third.sock.recv(1) == b"", "a third connection from one IP must be refused"
        first.send(first.packet("2011", MOMENT, {"i33200": {"Rtd": "1"}}))
        assert first.read(1)[0].cn == "9014"
        started = time.monotonic()
        for idle in (first, second):
            idle.sock.settimeout(5)
            assert idle.sock.recv(1) == b""
        assert time.monotonic() - started < 4


def test_registry_reload_on_sighup_admits_a_new_device(tmp_path, influx_db):
    influx, db = influx_db
    registry = tmp_path / "registry"
    registry.mkdir()
    foundry = (TEST_REGISTRY / "foundry.yaml").read_text(encoding="utf-8")
    (registry / "foundry.yaml").write_text(foundry, encoding="utf-8")
    with ServerProcess(tmp_path / "s", influx.url, db, registry=registry) as server:
        newcomer = Logger(server.port, mn=COATING_MN, pw=COATING_PW)
        newcomer.send(newcomer.packet("2011", MOMENT, {"a01012": {"Rtd": "800"}}))
        assert newcomer.read(1)[0].cp.params["QnRtn"] == "4"
        (registry / "coating.yaml").write_text((TEST_REGISTRY / "coating.yaml").read_text("utf-8"), "utf-8")
        (registry / "broken.yaml").write_text("id: [", encoding="utf-8")
        server.process.send_signal(signal.SIGHUP)
        time.sleep(1)
        newcomer.send(newcomer.packet("2011", MOMENT, {"a01012": {"Rtd": "800"}}))
        assert newcomer.read(1)[0].cp.params["QnRtn"] == "4", "a broken registry must not replace the good one"
        (registry / "broken.yaml").unlink()
        server.process.send_signal(signal.SIGHUP)
        time.sleep(1)
        accepted = newcomer.send(newcomer.packet("2011", MOMENT, {"a01012": {"Rtd": "800"}}))
        [ack] = newcomer.read(1)
        assert (ack.cn, ack.qn) == ("9014", accepted.qn)
        assert "registry reload refused" in server.log.read_text(encoding="utf-8")


def test_unknown_command_is_refused_not_stored(server, influx, db):
    logger = Logger(server.port)
    logger.send(logger.packet("8051", flag=5))
    [refusal] = logger.read(1)
    assert (refusal.cn, refusal.cp.params["QnRtn"]) == ("9011", "2")


def test_a_hole_the_device_fills_itself_is_not_requested(tmp_path, influx_db):
    influx, db = influx_db
    with ServerProcess(tmp_path / "s", influx.url, db, backfill={"grace_seconds": 1.0, "rate": 50.0}) as server:
        logger = Logger(server.port)
        for minutes in (0, 10, 40, 20, 30):  # the device replays 10:20 and 10:30 after an outage
            logger.send(logger.packet("2051", MOMENT + timedelta(minutes=minutes), {"i33200": {"Avg": "1"}}))
        answers = logger.read(6, timeout=3)
        assert [a.cn for a in answers] == ["9014"] * 5
