"""Real TCP traffic with real packet loss, captured by tcpdump, in a private network namespace.

Run as root inside `unshare --net` (see `capture_in_namespace`): the namespace has its own loopback
interface, so the queueing discipline and MTU set here change nothing on the host. Modes:

* `congested`: loopback limited by a token bucket (tc tbf: 20 Mbit/s, a 40 kB queue) that drops what
  does not fit, with three transfers of 1.5 MB at once: the senders lose packets before the capture
  point (tcpdump on loopback sees a packet when it leaves the queue) and retransmit them. Each
  transfer ends like TMG's dirty close: the server's FIN, then the client's RST (SO_LINGER 0).
* `capture-loss`: no loss on the wire (a long queue paces the traffic so that the captures keep up),
  but two captures: `full.pcap`, and `lossy.pcap` whose filter
  leaves out every data segment whose sequence number has bits 8-10 at 011 (the receivers get them,
  the capture does not: the loss of a capture that cannot keep up, or of offloaded traffic).

Writes the captures into OUT and prints a JSON line: bytes received, tcpdump's statistics, the
queueing discipline's statistics.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.probes.loopback import Tcpdump

PORT = 5555
PAYLOAD = "(ip[2:2] - ((ip[0] & 0xf) << 2) - ((tcp[12] & 0xf0) >> 2)) > 0"
DROPPED = f"((tcp[6] & 7) == 3 and {PAYLOAD})"  # data segments whose sequence number has bits 8-10 at 011


def _serve(listener: socket.socket, size: int, clients: int) -> None:
    def one(conn: socket.socket) -> None:
        with conn:
            conn.recv(100)
            conn.sendall(b"x" * size)
            conn.shutdown(socket.SHUT_WR)  # the server's FIN first
            conn.settimeout(10)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    workers = []
    for _ in range(clients):
        conn, _addr = listener.accept()
        t = threading.Thread(target=one, args=(conn,))
        t.start()
        workers.append(t)
    for t in workers:
        t.join(30)


def _client(got: list[int]) -> None:
    with socket.create_connection(("127.0.0.1", PORT), timeout=30) as c:
        c.sendall(b"GET /big HTTP/1.1\r\n\r\n")
        n = 0
        while data := c.recv(65536):
            n += len(data)
        got.append(n)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # then RST: a dirty close


def main(out: Path, mode: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up", "mtu", "1500"], check=True)
    if mode == "congested":  # a short queue: what does not fit is dropped
        subprocess.run(
            ["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "20mbit", "burst", "32kb", "limit", "40kb"],
            check=True,
        )
        dumps = [Tcpdump(out / "congested.pcap", f"tcp port {PORT}", buffer_kib=16384)]
        clients, size = 3, 1_500_000
    else:  # a long queue (nothing dropped), paced so that tcpdump keeps up
        subprocess.run(
            ["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "25mbit", "burst", "64kb", "limit", "8mb"],
            check=True,
        )
        dumps = [
            Tcpdump(out / "full.pcap", f"tcp port {PORT}", buffer_kib=16384),
            Tcpdump(out / "lossy.pcap", f"tcp port {PORT} and not {DROPPED}", buffer_kib=16384),
        ]
        clients, size = 2, 1_000_000
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen()
    server = threading.Thread(target=_serve, args=(listener, size, clients))
    server.start()
    got: list[int] = []
    threads = [threading.Thread(target=_client, args=(got,)) for _ in range(clients)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(60)
    server.join(60)
    listener.close()
    for dump in dumps:
        dump.stop()
    qdisc = subprocess.run(["tc", "-s", "qdisc", "show", "dev", "lo"], capture_output=True, text=True).stdout
    print(json.dumps({"received": got, "tcpdump": [d.stats for d in dumps], "qdisc": qdisc}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
