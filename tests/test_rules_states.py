"""The `state` measurement is written only for new minutes and minutes late data changed, with the same result."""

from __future__ import annotations

import uuid

import pytest
import pytest_twisted

from rules_support import at, make_engine, rtd, steady, write

FURNACE = rtd("P1", "i33200", steady(0, 60, 200))
FAN_AT_00 = rtd("T1", "g10201", steady(0, 60, 40, m10_21=0))
FAN_AT_30 = rtd("T1", "g10201", [(m + 0.5, 40.0) for m in range(10, 22)])  # late: 20 A on average, 44 %


@pytest.fixture
def full_db(influx):
    name = f"test_{uuid.uuid4().hex[:12]}"
    influx.query(f'CREATE DATABASE "{name}"')
    yield name
    influx.query(f'DROP DATABASE "{name}"')


def states(influx, db) -> list[list]:
    result = influx.query('SELECT "run", "load" FROM "state" WHERE "run" >= 0 GROUP BY "fac"', db=db, epoch="s")
    return [[s["tags"]["fac"], *row] for s in result["results"][0]["series"] for row in s["values"]]


@pytest_twisted.ensureDeferred
async def test_a_later_evaluation_writes_only_new_minutes(influx, db, make_engine):
    write(influx, db, FURNACE, FAN_AT_00)
    engine = make_engine()
    assert (await engine.evaluate(at(45))).states == 2 * 45  # P1 and T1 from minute 0 on
    assert (await engine.evaluate(at(46))).states == 2
    assert (await engine.evaluate(at(46) + 30)).states == 0
    assert (await make_engine().evaluate(at(47))).states == 2 * 47  # a new process rewrites its window


@pytest_twisted.ensureDeferred
async def test_late_data_rewrites_the_minutes_it_changes_and_equals_a_full_rewrite(influx, db, full_db,
                                                                                    make_engine):
    write(influx, full_db, FURNACE, FAN_AT_00, FAN_AT_30)
    await make_engine(full_db).evaluate(at(50))

    write(influx, db, FURNACE, FAN_AT_00)
    engine = make_engine()
    await engine.evaluate(at(45))
    write(influx, db, FAN_AT_30)
    report = await engine.evaluate(at(50))
    assert report.states == 12 + 2 * 5  # T1's minutes 10-21, and 45-49 of both facilities
    assert states(influx, db) == states(influx, full_db)


@pytest_twisted.ensureDeferred
async def test_after_a_failed_write_the_next_evaluation_writes_everything(influx, db, make_engine):
    write(influx, db, FURNACE, FAN_AT_00)
    engine = make_engine()
    write_lines = engine.client.write

    async def fail(lines, precision=None):
        raise ConnectionError("InfluxDB is down")

    engine.client.write = fail
    with pytest.raises(ConnectionError):
        await engine.evaluate(at(45))
    engine.client.write = write_lines
    assert (await engine.evaluate(at(45))).states == 2 * 45
    assert len(states(influx, db)) == 2 * 45
