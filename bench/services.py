"""Services and host probe benchmark: big exports and a busy TCP table.

    python bench/services.py [--services 5000] [--sockets 100000] [--repeat 3]

Figures printed: parse time of a Get-Service CSV, a PowerShell 5.1 JSON and an `sc query` text of
N services (a real server has 200-400; N is far above that), the services probe end to end on the
JSON, the host probe's aggregation of M sockets (a TMG under port exhaustion holds about 16,000 on
Windows; M is far above that), and one real `diagnose probe host` run on this machine.
Targets (2-core machine): every export of 5,000 services parsed in under 0.5 s; 100,000 sockets
aggregated in under 1 s; the real host probe in under 1 s (it samples the proxy process for 0.3 s
only when one runs).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose.compat import zip_strict  # noqa: E402
from diagnose.probes import ProbeContext  # noqa: E402
from diagnose.probes.host.probe import PortRange, TcpSocket, port_usage_fact, tcp_facts  # noqa: E402
from diagnose.probes.host.probe import probe as host_probe  # noqa: E402
from diagnose.probes.services.exports import read_export  # noqa: E402
from diagnose.probes.services.probe import probe as services_probe  # noqa: E402

NAMES = ["W3SVC", "WAS", "MSExchangeFBA", "MSExchangeADTopology", "MSExchangeIS", "MSExchangeRPC"]


def service_names(n: int) -> list[str]:
    return NAMES + [f"Svc{i:05d}" for i in range(n - len(NAMES))]


def write_exports(folder: Path, n: int) -> dict[str, Path]:
    names = service_names(n)
    rng = random.Random(7)
    states = [rng.choice((1, 4, 4, 4)) for _ in names]
    csv_lines = [
        "#TYPE System.ServiceProcess.ServiceController",
        '"Name","DisplayName","Status","StartType","MachineName","ServiceName"',
    ]
    for name, st in zip_strict(names, states):
        csv_lines.append(f'"{name}","Display {name}","{"Running" if st == 4 else "Stopped"}","Automatic",".","{name}"')
    paths = {"csv": folder / "big.csv", "json": folder / "big.json", "sc": folder / "big.txt"}
    paths["csv"].write_bytes(b"\xef\xbb\xbf" + "\r\n".join(csv_lines).encode() + b"\r\n")
    paths["json"].write_text(
        json.dumps(
            [
                {
                    "Name": n,
                    "ServiceName": n,
                    "DisplayName": f"Display {n}",
                    "Status": st,
                    "StartType": 2,
                    "MachineName": ".",
                }
                for n, st in zip_strict(names, states)
            ],
            indent=4,
        )
    )
    blocks = []
    for name, st in zip_strict(names, states):
        word = "RUNNING" if st == 4 else "STOPPED"
        flags = "                                (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)\r\n" if st == 4 else ""
        blocks.append(
            f"SERVICE_NAME: {name}\r\nDISPLAY_NAME: Display {name}\r\n"
            f"        TYPE               : 10  WIN32_OWN_PROCESS  \r\n"
            f"        STATE              : {st}  {word}  \r\n{flags}"
            f"        WIN32_EXIT_CODE    : 0  (0x0)\r\n        SERVICE_EXIT_CODE  : 0  (0x0)\r\n"
            f"        CHECKPOINT         : 0x0\r\n        WAIT_HINT          : 0x0\r\n\r\n"
        )
    paths["sc"].write_text("".join(blocks))
    return paths


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=5000)
    ap.add_argument("--sockets", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {platform.machine()} {platform.system()} python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_exports(Path(tmp), args.services)
        for fmt, path in paths.items():
            low, med = best(lambda p=path: read_export(p), args.repeat)
            size = path.stat().st_size / 1e6
            print(
                f"parse {fmt:4s} export, {args.services} services ({size:.1f} MB): best {low:.3f} s, median {med:.3f} s"
            )
        ctx = ProbeContext()
        spec = {"export": str(paths["json"]), "exchange_version": "2010", "published": ["owa", "outlook-anywhere"]}
        low, med = best(lambda: services_probe(ctx, spec), args.repeat)
        print(f"services probe on the JSON export: best {low:.3f} s, median {med:.3f} s")

    rng = random.Random(11)
    states = ["TIME_WAIT"] * 6 + ["ESTABLISHED"] * 3 + ["CLOSE_WAIT"]
    sockets = [
        TcpSocket(
            "10.1.4.98",
            1024 + (i % 64000),
            f"192.0.2.{rng.randrange(1, 40)}",
            rng.choice((443, 80)),
            rng.choice(states),
        )
        for i in range(args.sockets)
    ]
    rng_ports = PortRange(1025, 65535, "bench")
    servers = {"192.0.2.10", "192.0.2.11"}
    low, med = best(
        lambda: (tcp_facts(sockets, servers, set(), 20, None), port_usage_fact(sockets, rng_ports, None)), args.repeat
    )
    print(f"host aggregation of {args.sockets} sockets: best {low:.3f} s, median {med:.3f} s")
    low, med = best(lambda: host_probe(ProbeContext(), {"process_names": ["wspsrv.exe"]}), args.repeat)
    print(f"real host probe on this machine: best {low:.3f} s, median {med:.3f} s")


if __name__ == "__main__":
    main()
