"""A real ``evflow serve`` process on a free loopback port, for black-box HTTP tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import evflow_exe

TOKEN_ENV = "EVFLOW_TOKENS"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server: its base URL, its process and where its stderr goes."""

    url: str
    process: subprocess.Popen[bytes]
    stderr_path: Path
    stdout_path: Path
    _stopped: bool = field(default=False)

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def access_log(self) -> list[dict]:
        """The structured access log: every stderr line that is a JSON object."""
        import json

        out = []
        for line in self.stderr().splitlines():
            line = line.strip()
            if line.startswith("{"):
                with suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait for a graceful exit; its exit code."""
        if not self._stopped:
            self._stopped = True
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"serve did not stop within {timeout}s of SIGTERM") from None
        return self.process.returncode


def start_process(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVFLOW_")}
    if "EVFLOW_TEST_PG" in os.environ:
        full_env["EVFLOW_TEST_PG"] = os.environ["EVFLOW_TEST_PG"]
    full_env.update(env or {})
    logs = cwd / ".serve-logs"
    logs.mkdir(exist_ok=True)
    stamp = f"{time.monotonic_ns()}"
    err_path, out_path = logs / f"stderr-{stamp}.log", logs / f"stdout-{stamp}.log"
    with open(err_path, "wb") as err, open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [evflow_exe(), *args], cwd=cwd, env=full_env, stdout=out, stderr=err
        )
    return proc, err_path, out_path


@contextmanager
def serve(
    cwd: Path,
    *extra: str,
    db: str | None = None,
    env: dict[str, str] | None = None,
    ready_timeout: float = 30,
) -> Iterator[Server]:
    """``evflow serve --port FREE`` in ``cwd``; yields once ``/healthz`` answers; SIGTERM after."""
    port = free_port()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), *extra]
    if db is not None:
        args = ["--db", db, *args]
    proc, err_path, out_path = start_process(args, cwd, env)
    server = Server(f"http://127.0.0.1:{port}", proc, err_path, out_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"serve exited with {proc.returncode} before answering:\n{server.stderr()}"
                )
            try:
                if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not answer /healthz:\n{server.stderr()}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            with suppress(AssertionError):
                server.terminate()
