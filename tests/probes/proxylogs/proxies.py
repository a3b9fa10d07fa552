"""Real HAProxy and nginx on loopback, in front of a small Python back end that answers, hangs, resets
or closes, so that the proxies write their own logs for the reader tests.

The back end decides by the request path: /ok answers 200; /hang reads the request and answers
nothing until the peer goes (or 20 s); /reset closes with RST (SO_LINGER 0); /close closes with FIN
and no answer; /Microsoft-Server-ActiveSync?Cmd=Ping answers 200 after 1.2 s (a long poll), or with
`hold=N` in the query after N seconds (a Ping waiting out a heartbeat of N s) unless the peer goes first.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from tests.servers import closed_port

LOOPBACK = "127.0.0.1"


def missing(tool: str) -> str | None:
    return None if shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists() else f"{tool} is not installed"


def binary(tool: str) -> str:
    return shutil.which(tool) or f"/usr/sbin/{tool}"


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all held open while they are chosen)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind((LOOPBACK, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class Backend:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return  # the proxy reset before the request was whole (its client gave up)
                if not chunk:
                    return
                data += chunk
            path = data.split(b" ", 2)[1]
            if path.startswith(b"/reset"):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if path.startswith(b"/close"):
                return
            if path.startswith(b"/hang"):
                conn.settimeout(20)
                with contextlib.suppress(OSError):
                    conn.recv(1)  # until the proxy gives up and closes
                return
            hold = re.search(rb"[?&]hold=(\d+(?:\.\d+)?)", path)
            if hold:
                conn.settimeout(float(hold.group(1)))
                try:
                    if not conn.recv(1):
                        return  # the proxy gave up first
                except TimeoutError:
                    pass
                except OSError:
                    return  # the proxy reset the connection
            elif b"cmd=ping" in path.lower():
                time.sleep(1.2)
            with contextlib.suppress(OSError):  # the proxy may have given up on the answer
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def get(port: int, path: str, abort_after: float | None = None) -> bytes:
    """One HTTP/1.1 request; with `abort_after`, the client closes after that many seconds without reading."""
    with socket.create_connection((LOOPBACK, port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: mail.example.test\r\nConnection: close\r\n\r\n".encode())
        if abort_after is not None:
            time.sleep(abort_after)
            return b""
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def tcp_session(port: int, payload: bytes) -> None:
    with socket.create_connection((LOOPBACK, port), timeout=30) as s:
        s.sendall(payload)
        try:
            while s.recv(65536):
                pass
        except (ConnectionResetError, TimeoutError):
            pass


class Proxy:
    """A proxy process started with its own config in `workdir`; `stop()` ends it (SIGTERM, then SIGKILL)."""

    def __init__(
        self, argv: list[str], workdir: Path, ports: list[int], stdout: Path | None = None, stderr: Path | None = None
    ) -> None:
        self.out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.err = open(stderr, "wb") if stderr else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(argv, cwd=workdir, stdout=self.out, stderr=self.err)
        deadline = time.monotonic() + 15
        for port in ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited with {self.proc.returncode}")
                try:
                    socket.create_connection((LOOPBACK, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fh in (self.out, self.err):
            if fh is not subprocess.DEVNULL:
                fh.close()  # type: ignore[union-attr]


def wait_for_lines(path: Path, count: int, deadline: float = 20.0) -> list[str]:
    """The log's lines once it has at least `count` (proxies log a session when it ends)."""
    end = time.monotonic() + deadline
    while True:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        if len([ln for ln in lines if ln.strip()]) >= count or time.monotonic() > end:
            return lines
        time.sleep(0.05)


__all__ = [
    "LOOPBACK",
    "Backend",
    "Proxy",
    "binary",
    "closed_port",
    "free_ports",
    "get",
    "missing",
    "tcp_session",
    "wait_for_lines",
]
