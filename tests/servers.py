"""Real server processes on loopback for tests that need sockets (durability, CLI).

A port chosen here and handed to a server can be taken by another process before the server
binds it. So ``start_server`` asks for port 0 and reads the port the server got from its
"Uvicorn running on" log line. A node that must state its URL (``public_url``) needs the
port before it starts: that one is started again on another port if its port was taken.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

ATTEMPTS = 5
READY_SECONDS = 60  # a generous bound: the wait ends as soon as /readyz answers


class PortTakenError(RuntimeError):
    """The server could not bind its port: someone took it between our choice and its bind."""


def unused_port() -> int:
    """A port free a moment ago: another process may take it first, so whoever binds it
    must retry on PortTakenError (as `start_server` does)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port where connections are refused, for as long as the block runs.

    The socket stays bound (not listening) meanwhile, so no other process can take the port
    and answer there.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        yield port


RUNNING_ON = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def start_server(
    node_dir: Path, *, workers: int = 1, public_url: bool = False
) -> tuple[subprocess.Popen[bytes], int]:
    """``exchange serve`` in its own process group, ready (/readyz answers); and its port.

    ``public_url``: the node states ``http://127.0.0.1:PORT`` (EXCHANGE_PUBLIC_URL), for
    tests where peers reach it by the URL it states.
    """
    if not public_url:
        command = ["-m", "exchange", "serve", str(node_dir), "--port", "0"]
        process = _spawn([*command, "--workers", str(workers)], {})
        port = _bound_port(process)
        return _wait_ready(process, port), port
    for _attempt in range(ATTEMPTS):
        port = unused_port()
        command = ["-m", "exchange", "serve", str(node_dir), "--port", str(port)]
        command += ["--workers", str(workers)]
        env = {"EXCHANGE_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        try:
            return start_python(command, port, env=env), port
        except PortTakenError:
            continue
    raise RuntimeError(f"no free port for the server in {ATTEMPTS} attempts")


def start_python(
    arguments: list[str], port: int, *, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``python ARGUMENTS`` serving on ``port``, in its own process group, once /readyz is ready.

    Raises PortTakenError if the process exits because the port is in use.
    """
    return _wait_ready(_spawn(arguments, env or {}), port)


def _spawn(arguments: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, **env},
    )


def _bound_port(process: subprocess.Popen[bytes]) -> int:
    """The port in the server's "Uvicorn running on" line. Lines before it are dropped;
    later ones stay in ``process.stderr`` for the test."""
    assert process.stderr is not None
    stderr = process.stderr
    lines: queue.Queue[bytes] = queue.Queue()

    def read() -> None:  # until that line or the end: a blocking read needs its own thread
        for line in iter(stderr.readline, b""):
            lines.put(line)
            if RUNNING_ON.search(line):
                return
        lines.put(b"")

    threading.Thread(target=read, daemon=True).start()
    seen: list[bytes] = []
    deadline = time.monotonic() + READY_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if found := RUNNING_ON.search(line):
            return int(found.group(1))
        if not line:
            process.wait(timeout=10)
            raise RuntimeError(f"server exited: {b''.join(seen).decode()}{rest_of_stderr(process)}")
        seen.append(line)
    kill_hard(process)
    raise RuntimeError(f"server did not say its port in {READY_SECONDS} s")


def _wait_ready(process: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = rest_of_stderr(process)
            if "address already in use" in stderr.lower():
                raise PortTakenError(stderr)
            raise RuntimeError(f"server exited: {stderr}")
        try:
            ready = httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx2.TransportError:
            ready = False
        if ready and process.poll() is None:  # our server answered, not one that took the port
            return process
        time.sleep(0.05)
    kill_hard(process)
    raise RuntimeError(f"server did not become ready in {READY_SECONDS} s")


def kill_hard(process: subprocess.Popen[bytes]) -> str:
    """SIGKILL the whole process group: no shutdown handler runs. Returns what the server
    wrote to stderr and nobody read yet, and closes the pipe (not left to the collector)."""
    os.killpg(process.pid, 9)
    process.wait(timeout=10)
    return rest_of_stderr(process)


def rest_of_stderr(process: subprocess.Popen[bytes]) -> str:
    """The unread rest of an ended process's stderr; closes the pipe."""
    if process.stderr is None or process.stderr.closed:
        return ""
    with process.stderr:
        return process.stderr.read().decode()
