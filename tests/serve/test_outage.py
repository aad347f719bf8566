"""PostgreSQL going away while the server runs: 503 problems that never show the password, and the
server back on its own once the database is (docs/serve.md: "reconnects by itself").

The database is reached through a TCP relay the test can cut, as a network failure or a restarted
server would cut it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.serve.ce import make, post_structured
from tests.serve.server import serve

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get("EVFLOW_TEST_PG"), reason="needs EVFLOW_TEST_PG"),
]
PASSWORD = "pw-OUTAGE-7c41e2"  # the test server trusts local clients: a password it never checks


class Relay:
    """Forwards loopback connections to ``target``; :meth:`cut` drops them all and refuses new
    ones until :meth:`restore`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.down = threading.Event()
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.down.set()
        with self.lock:
            for s in self.open:
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self.open.clear()

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


@contextmanager
def relayed_url() -> Iterator[tuple[str, Relay]]:
    """A fresh schema's URL that goes through a relay, with a password in it."""
    from tests.pg import fresh_schema_url

    with fresh_schema_url() as url:
        parts = urlsplit(url)
        relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
        netloc = f"{parts.username or 'postgres'}:{PASSWORD}@127.0.0.1:{relay.port}"
        try:
            yield urlunsplit(parts._replace(netloc=netloc)), relay
        finally:
            relay.close()


def test_database_lost_while_serving_is_503_then_recovers(bare: Path) -> None:
    with relayed_url() as (url, relay), serve(bare, db=url) as s, s.client() as c:
        first = post_structured(c, make("outage.test", {"n": 1}, id="before"))
        assert first.status_code == 201, first.text
        relay.cut()
        answers = [
            post_structured(c, make("outage.test", {"n": 2}, id="during")),
            c.get("/readyz"),
            c.get("/events"),
        ]
        for r in answers:
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert PASSWORD not in r.text
        assert ":***@" in answers[0].json()["detail"]  # says where, with the password masked
        relay.restore()
        again = post_structured(c, make("outage.test", {"n": 2}, id="during"))
        assert again.status_code == 201, again.text  # no restart needed
        assert again.json()["seq"] == first.json()["seq"] + 1  # the refused one left no gap
        assert c.get("/readyz").status_code == 200
        s.terminate()
        assert PASSWORD not in s.stderr()
        assert PASSWORD not in s.stdout_path.read_text()
