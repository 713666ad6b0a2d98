"""Real server processes on loopback for tests that need sockets (durability, CLI)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(node_dir: Path, port: int, workers: int = 1) -> subprocess.Popen[bytes]:
    """``exchange serve`` in its own process group; waits until /readyz answers ready."""
    command = [
        "-m",
        "exchange",
        "serve",
        str(node_dir),
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return start_python(command, port)


def start_python(arguments: list[str], port: int) -> subprocess.Popen[bytes]:
    """``python ARGUMENTS`` serving on ``port``, in its own process group, once /readyz is ready."""
    process = subprocess.Popen(
        [sys.executable, *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not become ready in 30 s")


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole process group: no shutdown handler runs."""
    os.killpg(process.pid, 9)
    process.wait(timeout=10)
