"""Each node as a real ``exchange serve`` process: started, stopped and started again on the
same port, so "offline" is a stopped process and the peers find it where they knew it.

Every process runs in its own process group and writes its JSON log to ``server.log`` in
its node directory (evidence, and never a pipe that fills up). Every process started here is
registered for `stop_all`, which the runner calls in ``finally`` and ``atexit`` calls too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from schemas.errors import ExchangeError

READY_SECONDS = 60.0
_running: set[subprocess.Popen[bytes]] = set()


class ServerError(ExchangeError):
    """A node's server did not start, or did not become ready."""


class PortTakenError(ServerError):
    """Another process holds the port this node must serve on."""


def free_port() -> int:
    """A loopback port free a moment ago (whoever binds it must handle PortTakenError)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """One node's server process; ``port`` is fixed once the node has a URL."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start and wait for ``/readyz``. Raises PortTakenError, or ServerError with the
        end of the server's log (a node that refuses to start says why there)."""
        if self.running:
            return
        command = [sys.executable, "-m", "exchange", "serve", str(self.directory)]
        command += ["--port", str(self.port)]
        env = {**os.environ, "EXCHANGE_PUBLIC_URL": self.url}
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
                command, stdout=log, stderr=log, start_new_session=True, env=env
            )
        self.process = process
        _running.add(process)
        self._wait_ready(process)

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                _running.discard(process)
                self.process = None
                tail = self.log_tail()
                if "address already in use" in tail.lower():
                    raise PortTakenError(
                        f"port {self.port} is taken by another process: the node in "
                        f"{self.directory} cannot serve at {self.url}, where its peers know it"
                    )
                raise ServerError(f"the node in {self.directory} did not start: {tail}")
            try:
                ready = httpx2.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx2.TransportError:
                ready = False
            if ready and process.poll() is None:
                return
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"the node in {self.directory} was not ready in {READY_SECONDS:g} s")

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: the server signs a last checkpoint), SIGKILL if stuck."""
        process, self.process = self.process, None
        if process is not None:
            _stop(process)

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    _running.discard(process)


def stop_all() -> None:
    """Stop every server process this module started and that still runs."""
    for process in list(_running):
        _stop(process)


atexit.register(stop_all)
