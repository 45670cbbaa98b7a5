"""Start the real API under gunicorn on loopback for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill_hard(self) -> None:
        """kill -9 the master and every worker: a crash, not a shutdown."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


API_APP = "service.api.app:create_app()"


def start(
    env: dict[str, str], workers: int, log: Path, timeout: int = 120, app: str = API_APP
) -> Server:
    """Start gunicorn (the API, or ``app``) in its own process group and wait for /healthz."""
    port = free_port()
    fh = log.open("ab")
    proc = subprocess.Popen(
        [
            GUNICORN,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            str(timeout),
            app,
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(base + "/healthz", timeout=5).ok:
                return Server(base, proc, log)
        except requests.RequestException:
            pass  # not listening yet, or busy booting its workers
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@contextmanager
def gunicorn(
    env: dict[str, str], workers: int, log: Path, timeout: int = 120, app: str = API_APP
) -> Iterator[Server]:
    """A running API; stopped (gracefully, if still alive) when the block ends."""
    server = start(env, workers, log, timeout, app)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGTERM)
            try:
                server.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.proc.pid, signal.SIGKILL)
