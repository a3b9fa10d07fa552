"""Real TCP traffic on loopback, captured with tcpdump: shared by the capture tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from tests.servers import family_of


def cannot_capture() -> str | None:
    """Why a loopback capture cannot be made here, or None."""
    if shutil.which("tcpdump") is None:
        return "tcpdump is not installed"
    if os.geteuid() != 0:
        return "capturing on loopback needs root"
    return None


class Tcpdump:
    """tcpdump writing `path` for `port_filter` on lo, from when it listens until `stop()`; `buffer_kib`:
    its kernel buffer (tcpdump -B), for captures that must not drop packets under load.

    The snapshot length is kept small (`snaplen`, tcpdump -s; the readers need the headers, and TCP's
    own length comes from the IP header): in immediate mode the kernel's ring has one frame per packet,
    each as large as the snapshot (up to the loopback MTU, 64 KiB), so the default 2 MiB buffer holds a
    few dozen packets, and a tcpdump starved of CPU for a moment on a busy machine lost 42 of a
    66-packet conversation."""

    def __init__(self, path: Path, port_filter: str, buffer_kib: int | None = None, snaplen: int = 2048) -> None:
        self.path = path
        size = ["-B", str(buffer_kib or 8192)]
        self.proc = subprocess.Popen(
            [
                "tcpdump",
                "-i",
                "lo",
                "-n",
                "-U",
                "--immediate-mode",
                "-s",
                str(snaplen),
                *size,
                "-Z",
                "root",
                "-w",
                str(path),
                port_filter,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 10
        line = b""
        while b"listening" not in line and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError("tcpdump did not start")
        time.sleep(0.5)  # the capture is attached a moment after tcpdump says it is listening

    def stop(self) -> None:
        # tcpdump writes each packet as it comes (-U): wait until the file has stopped growing for a
        # moment, so that the last packets (a final RST) are in it even on a busy machine
        size, stable_since, deadline = -1, time.monotonic(), time.monotonic() + 5
        while time.monotonic() < deadline:
            now = self.path.stat().st_size if self.path.exists() else 0
            if now != size:
                size, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= 0.5:
                break
            time.sleep(0.05)
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)
        self.stats = self.proc.stderr.read().decode() if self.proc.stderr else ""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(family_of(host)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_once(port: int, behaviour: str, ready: threading.Event, host: str = "127.0.0.1") -> None:
    """Accept one connection on `host`:`port` (127.0.0.1 or ::1), read the request, then end it as
    `behaviour` says: "reset-mid-transfer" (send, then close with SO_LINGER 0: RST), "graceful" (answer,
    wait for the client's FIN, close), anything else (answer, then FIN first; the client may abort)."""
    with socket.socket(family_of(host)) as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((host, port))
        ls.listen()
        ready.set()
        conn, _ = ls.accept()
        with conn:
            conn.recv(1000)
            if behaviour == "reset-mid-transfer":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.sendall(b"x" * 1000)
                time.sleep(0.1)
                return  # close with linger 0: RST while the client still sends
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if behaviour == "graceful":
                conn.recv(1000)  # wait for the client's FIN, then close
            else:  # server closes first (FIN); the client aborts with SO_LINGER 0
                conn.shutdown(socket.SHUT_WR)
                time.sleep(0.3)
