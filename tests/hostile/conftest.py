"""Fixtures of the adversarial suite: hostile inputs, a second log on the same backend, NATS."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import unique
from tests.fixtures.nats_server import NATS_URL, require_nats

# -- hostile values -------------------------------------------------------------------------------

#: JSON texts of event data that evflow must refuse with one line naming the field (exit 2)
BAD_DATA_JSON: dict[str, str] = {
    "lone-surrogate-escape": '{"s": "\\ud800"}',
    "lone-low-surrogate-escape": '{"s": "x\\udc80y"}',
    "int-over-4300-digits": '{"n": ' + "9" * 5000 + "}",
    "negative-int-over-4300-digits": '{"n": -' + "9" * 4301 + "}",
    "float-overflow": '{"x": 1e999}',
    "negative-float-overflow": '{"x": -1e999}',
    "too-deep": '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
    "too-deep-objects": '{"a": ' + '{"b": ' * 3000 + "1" + "}" * 3000 + "}",
}

#: event times that no log can hold once put in UTC, and times of years below 1000
BAD_TIMES = [
    "0001-01-01T00:00:00+01:00",  # year 0 in UTC
    "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
    "2024-02-30T00:00:00Z",
    "2024-01-01T24:00:01Z",
]

#: numbers that no position or delivery id can be
HUGE_NUMBER = "9" * 20


@pytest.fixture(params=sorted(BAD_DATA_JSON))
def bad_data(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(name, JSON text) of one hostile data value."""
    return request.param, BAD_DATA_JSON[request.param]


@pytest.fixture(params=BAD_TIMES)
def bad_time(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- a second log on the test's backend -----------------------------------------------------------


@pytest.fixture
def other_db(each_backend: str, project: Path) -> Iterator[str]:
    """Another, empty log on the same backend as the test's (a restore target)."""
    if each_backend == "sqlite":
        yield str(project / "other.db")
        return
    from tests.pg import fresh_schema_url

    with fresh_schema_url() as url:
        yield url


@pytest.fixture
def third_db(each_backend: str, project: Path) -> Iterator[str]:
    if each_backend == "sqlite":
        yield str(project / "third.db")
        return
    from tests.pg import fresh_schema_url

    with fresh_schema_url() as url:
        yield url


# -- NATS -----------------------------------------------------------------------------------------


@dataclass
class NatsTarget:
    url: str
    stream: str
    prefix: str


@pytest.fixture
def nats_target() -> Iterator[NatsTarget]:
    """A fresh JetStream stream taking ``<prefix>.>``; deleted afterwards."""
    require_nats()
    target = NatsTarget(NATS_URL, unique("HOSTILE"), unique("hostile"))

    async def create() -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().add_stream(name=target.stream, subjects=[f"{target.prefix}.>"])
        finally:
            await nc.close()

    async def delete() -> None:
        import nats
        from nats.js.errors import NotFoundError

        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(target.stream)
        except NotFoundError:
            pass
        finally:
            await nc.close()

    asyncio.run(create())
    yield target
    asyncio.run(delete())


def publish(
    subject: str, payloads: list[bytes], headers: list[dict[str, str] | None] | None = None
) -> None:
    """Publish raw payloads to JetStream (each acknowledged)."""

    async def go() -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            for i, payload in enumerate(payloads):
                await js.publish(subject, payload, headers=(headers or [None] * len(payloads))[i])
        finally:
            await nc.close()

    asyncio.run(go())
