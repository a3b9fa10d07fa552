"""Benchmark of the proxy log readers (`diagnose probe proxylogs`) against awk counting the same thing.

Generates one log per format of at least --size-mb (IIS W3C of an Exchange front end with ARR errors,
Exchange HttpProxy CSV with its 73 fields, HAProxy HTTP with a syslog prefix, nginx access with timing
variables), then prints for each file awk's and the reader's wall-clock and CPU time (the reader's
worker processes included) and throughput (best of --rounds, interleaved, warm page cache), the
reader/awk ratios of both, and the load average (wall times mean little on a loaded machine). The
reader runs from compiled bytecode, as installed (bench/startup.py: compiled_env). awk counts
what the reader's status and code figures hold:

  IIS:       status.substatus x sc-win32-status         (awk '!/^#/ {c[$16"."$17" "$18]++}')
  HttpProxy: HttpStatus x BackEndStatus x ErrorCode     (awk -F, '!/^#/ {c[$20" "$21" "$22]++}')
  HAProxy:   status x termination state                 (awk '{c[$11" "$15]++}' on the syslog-prefixed line)
  nginx:     status                                     (awk '{c[$9]++}')

The reader uses the C accelerator where it was built; DIAGNOSE_PURE_PYTHON=1 in the environment
measures the pure-Python path instead. --jobs 1 measures one process.

    python bench/proxylogs.py [--size-mb 500] [--rounds 2] [--dir DIR] [--keep] [--kinds iis,nginx] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.startup import compiled_env, timed  # noqa: E402

IIS_HEADER = (
    "#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n"
    "#Date: 2024-03-04 00:00:00\r\n"
    "#Fields: date time s-sitename s-computername s-ip cs-method cs-uri-stem cs-uri-query s-port "
    "cs-username c-ip cs-version cs(User-Agent) cs(Referer) cs-host sc-status sc-substatus "
    "sc-win32-status sc-bytes cs-bytes time-taken\r\n"
)
HTTPPROXY_FIELDS = (
    "DateTime,RequestId,MajorVersion,MinorVersion,BuildVersion,RevisionVersion,ClientRequestId,Protocol,UrlHost,"
    "UrlStem,ProtocolAction,AuthenticationType,IsAuthenticated,AuthenticatedUser,Organization,AnchorMailbox,"
    "UserAgent,ClientIpAddress,ServerHostName,HttpStatus,BackEndStatus,ErrorCode,Method,ProxyAction,TargetServer,"
    "TargetServerVersion,RoutingType,RoutingHint,BackEndCookie,ServerLocatorHost,ServerLocatorLatency,RequestBytes,"
    "ResponseBytes,TargetOutstandingRequests,AuthModulePerfContext,HttpPipelineLatency,CalculateTargetBackEndLatency,"
    "GlsLatencyBreakup,TotalGlsLatency,AccountForestLatencyBreakup,TotalAccountForestLatency,"
    "ResourceForestLatencyBreakup,TotalResourceForestLatency,ADLatency,SharedCacheLatencyBreakup,"
    "TotalSharedCacheLatency,ActivityContextLifeTime,ModuleToHandlerSwitchingLatency,ClientReqStreamLatency,"
    "BackendReqInitLatency,BackendReqStreamLatency,BackendProcessingLatency,BackendRespInitLatency,"
    "BackendRespStreamLatency,ClientRespStreamLatency,KerberosAuthHeaderLatency,HandlerCompletionLatency,"
    "RequestHandlerLatency,HandlerToModuleSwitchingLatency,ProxyTime,CoreLatency,RoutingLatency,HttpProxyOverhead,"
    "TotalRequestTime,RouteRefresherLatency,UrlQuery,BackEndGenericInfo,GenericInfo,GenericErrors,EdgeTraceId,"
    "DatabaseGuid,UserADObjectGuid,PartitionEndpointLookupLatency,RoutingStatus"
)
HTTPPROXY_HEADER = (
    "#Software: Microsoft Exchange Server\r\n#Version: 15.02.1118.007\r\n#Log-type: HttpProxy Logs\r\n"
    "#Date: 2024-03-04T00:00:00.000Z\r\n#Fields: " + HTTPPROXY_FIELDS + "\r\n"
)
AWK = {
    "iis": '!/^#/ {c[$16"."$17" "$18]++} END {for (k in c) print k, c[k]}',
    "httpproxy": '!/^#/ {c[$20" "$21" "$22]++} END {for (k in c) print k, c[k]}',
    "haproxy": '{c[$11" "$15]++} END {for (k in c) print k, c[k]}',
    "nginx": "{c[$9]++} END {for (k in c) print k, c[k]}",
}


def _iis_rows(rng: random.Random) -> list[str]:
    kinds = [
        ("POST", "/Microsoft-Server-ActiveSync/default.eas", "Cmd=Ping&User=u{n}&DeviceId=D{n}", "200", "0", "0"),
        ("POST", "/Microsoft-Server-ActiveSync/default.eas", "Cmd=Ping&User=u{n}&DeviceId=D{n}", "200", "0", "64"),
        ("RPC_IN_DATA", "/rpc/rpcproxy.dll", "cas01.contoso.test:6001", "200", "0", "1236"),
        ("GET", "/owa/", "-", "200", "0", "0"),
        ("GET", "/owa/", "-", "502", "3", "12002"),
        ("GET", "/ecp/", "-", "304", "0", "0"),
    ]
    rows = []
    for i in range(4000):
        method, stem, query, status, sub, win32 = rng.choices(kinds, [20, 3, 5, 60, 2, 10])[0]
        rows.append(
            f" W3SVC1 CAS01 10.0.0.5 {method} {stem} {query.format(n=i % 500)} 443 CONTOSO\\u{i % 500} "
            f"203.0.113.{i % 250} HTTP/1.1 Apple-iPhone/1904.1 - mail.contoso.test {status} {sub} {win32} "
            f"412 735 {rng.randint(10, 1_800_000)}\r\n"
        )
    return rows


def _httpproxy_rows(rng: random.Random) -> list[str]:
    kinds = [
        ("Eas", "/Microsoft-Server-ActiveSync/default.eas", "Ping", "200", "200", "", "?Cmd=Ping&User=u{n}"),
        ("Eas", "/Microsoft-Server-ActiveSync/default.eas", "Sync", "200", "200", "", "?Cmd=Sync&User=u{n}"),
        ("RpcHttp", "/rpc/rpcproxy.dll", "", "200", "200", "", "?cas01.contoso.test:6001"),
        ("Mapi", "/mapi/emsmdb/", "NotificationWait", "200", "200", "", "?mailboxId=m{n}"),
        ("Owa", "/owa/", "", "200", "200", "", ""),
        ("Owa", "/owa/", "", "503", "503", "12002", ""),
    ]
    width = HTTPPROXY_FIELDS.count(",") + 1
    rows = []
    for i in range(4000):
        protocol, stem, action, status, backend, error, query = rng.choices(kinds, [20, 10, 5, 5, 55, 5])[0]
        values = [""] * width
        values[1], values[7], values[8], values[9], values[10] = f"r{i}", protocol, "mail.contoso.test", stem, action
        values[16], values[17], values[18] = "Apple-iPhone/1904.1", f"203.0.113.{i % 250}", "CAS01"
        values[19], values[20], values[21], values[22] = status, backend, error, "POST"
        values[63], values[65] = str(rng.randint(10, 1_800_000)), query.format(n=i % 500)
        rows.append("," + ",".join(values[1:]) + "\r\n")
    return rows


def _haproxy_rows(rng: random.Random) -> list[str]:
    kinds = [
        ("200", "----", "/owa/"),
        ("200", "----", "/Microsoft-Server-ActiveSync/default.eas?Cmd=Ping"),
        ("502", "SH--", "/owa/"),
        ("504", "sH--", "/owa/"),
        ("-1", "CD--", "/rpc/rpcproxy.dll"),
        ("503", "SC--", "/owa/"),
    ]
    rows = []
    for i in range(4000):
        status, term, uri = rng.choices(kinds, [60, 20, 3, 3, 10, 4])[0]
        rows.append(
            f"cas-lb haproxy[1234]: 203.0.113.{i % 250}:{rng.randint(1024, 65535)} [04/Mar/2024:00:00:"
            f"{i % 60:02d}.{i % 1000:03d}] fe_https~ be_exchange/cas{i % 3} 0/0/1/{rng.randint(1, 900)}/"
            f'{rng.randint(1, 1_800_000)} {status} 1234 - - {term} 10/10/3/1/0 0/0 "POST {uri} HTTP/1.1"\n'
        )
    return rows


def _nginx_rows(rng: random.Random) -> list[str]:
    kinds = [
        ("200", "/owa/"),
        ("200", "/Microsoft-Server-ActiveSync/default.eas?Cmd=Ping"),
        ("499", "/owa/"),
        ("502", "/owa/"),
        ("504", "/mapi/emsmdb/"),
    ]
    rows = []
    for i in range(4000):
        status, uri = rng.choices(kinds, [70, 15, 8, 4, 3])[0]
        rt = rng.randint(1, 1_800_000) / 1000
        rows.append(
            f'203.0.113.{i % 250} - - [04/Mar/2024:00:00:{i % 60:02d} +0000] "POST {uri} HTTP/1.1" {status} '
            f'{rng.randint(0, 9999)} "-" "Outlook-iOS/2.0" rt={rt:.3f} uct="0.001" urt="{rt:.3f}" '
            f'ua="10.0.0.{5 + i % 3}:443" us="{status}"\n'
        )
    return rows


def generate(kind: str, path: Path, size: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    rows = {"iis": _iis_rows, "httpproxy": _httpproxy_rows, "haproxy": _haproxy_rows, "nginx": _nginx_rows}[kind](rng)
    written = 0
    with open(path, "w", encoding="ascii", newline="") as fh:
        if kind in ("iis", "httpproxy"):
            written += fh.write(IIS_HEADER if kind == "iis" else HTTPPROXY_HEADER)
        day = 0
        while written < size:
            clock = f"{(day % 86400) // 3600:02d}:{(day % 3600) // 60:02d}:{day % 60:02d}"
            if kind == "iis":
                chunk = "".join(f"2024-03-04 {clock}" + r for r in rows)
            elif kind == "httpproxy":
                chunk = "".join(f"2024-03-04T{clock}.123Z" + r for r in rows)
            else:
                chunk = "".join(("Mar  4 00:00:00 " if kind == "haproxy" else "") + r for r in rows)
            written += fh.write(chunk)
            day += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--kinds", default="iis,httpproxy,haproxy,nginx")
    parser.add_argument("--jobs", type=int, default=0, help="reader worker processes (0: up to 2)")
    args = parser.parse_args()
    awk = shutil.which("mawk") or shutil.which("awk") or "awk"
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-proxylogs-"))
    work.mkdir(parents=True, exist_ok=True)
    size = args.size_mb << 20
    diagnose = [sys.executable, "-m", "diagnose", "probe", "proxylogs", "--format", "json", "--jobs", str(args.jobs)]
    env = compiled_env(work / "pycache")  # the reader as installed: from compiled bytecode (bench/startup.py)
    print(f"awk: {awk}; python {sys.version.split()[0]}; {os.cpu_count()} cores; size {args.size_mb} MB per file")
    try:
        for kind in args.kinds.split(","):
            path = work / f"{kind}.log"
            if not (args.keep and path.exists() and path.stat().st_size >= size):
                generate(kind, path, size)
            mb = path.stat().st_size / (1 << 20)
            best: dict[str, tuple[float, float]] = {}
            for _ in range(args.rounds):
                awk_argv = [awk, "-F,", AWK[kind], str(path)] if kind == "httpproxy" else [awk, AWK[kind], str(path)]
                for name, argv in (("awk", awk_argv), ("reader", [*diagnose, str(path)])):
                    got = timed(argv, env if name == "reader" else None)
                    if name not in best or got[0] < best[name][0]:
                        best[name] = got
            for name, (wall, cpu) in best.items():
                print(f"{kind:8} {name:7} {mb:7.0f} MB  wall {wall:6.2f} s  cpu {cpu:6.2f} s  {mb / wall:7.1f} MB/s")
            print(
                f"{kind:8} reader/awk wall ratio {best['reader'][0] / best['awk'][0]:.2f}, cpu ratio "
                f"{best['reader'][1] / best['awk'][1]:.2f} (below 1: faster than awk; cpu counts the reader's "
                "start-up and workers, and holds better than wall on a loaded machine)"
            )
            print(f"{kind:8} load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
