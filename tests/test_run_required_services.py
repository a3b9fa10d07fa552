"""`diagnose run` with one services export per CAS (`--services-export` twice), end to end.

The exports are written in the exact format `Get-WmiObject Win32_Service | Export-Csv` writes in
Windows PowerShell 5.1 (the `#TYPE` line, every field quoted, CRLF), row by row from the recorded
export in tests/data/services/win32-service-wmi.csv, with the server name and service states of each
case. Nothing is sent on the network: the profile's addresses are documentation addresses and the
run is --offline.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
RECORDED = REPO / "tests" / "data" / "services" / "win32-service-wmi.csv"

# an Exchange 2010 Client Access server: (short name, display name, StartMode)
CAS_2010 = (
    ("IISADMIN", "IIS Admin Service", "Auto"),
    ("MSExchangeAB", "Microsoft Exchange Address Book", "Auto"),
    ("MSExchangeADTopology", "Microsoft Exchange Active Directory Topology", "Auto"),
    ("MSExchangeFBA", "Microsoft Exchange Forms-Based Authentication service", "Auto"),
    ("MSExchangeFDS", "Microsoft Exchange File Distribution", "Auto"),
    ("MSExchangeIMAP4", "Microsoft Exchange IMAP4", "Manual"),
    ("MSExchangeMailboxReplication", "Microsoft Exchange Mailbox Replication", "Auto"),
    ("MSExchangeProtectedServiceHost", "Microsoft Exchange Protected Service Host", "Auto"),
    ("MSExchangeRPC", "Microsoft Exchange RPC Client Access", "Auto"),
    ("MSExchangeServiceHost", "Microsoft Exchange Service Host", "Auto"),
    ("W3SVC", "World Wide Web Publishing Service", "Auto"),
)


def win32_service_export(
    path: Path, server: str, stopped: Sequence[str], services: Sequence[tuple[str, str, str]] = CAS_2010
) -> Path:
    """A Win32_Service export of `server`: every one of `services` running unless named in `stopped`
    (Manual services are stopped, as on a healthy server)."""
    with RECORDED.open(encoding="utf-8", newline="") as f:
        type_line = f.readline()
        rows = list(csv.DictReader(f))
    template = next(r for r in rows if r["Name"] == "MSExchangeFBA")
    old_server, old_name = template["SystemName"], template["Name"]
    out = io.StringIO()
    out.write(type_line)
    writer = csv.DictWriter(out, fieldnames=list(template), quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writeheader()
    for pid, (name, display, start) in enumerate(services, start=1800):
        running = start == "Auto" and name not in stopped
        row = {k: v.replace(old_server, server).replace(old_name, name) for k, v in template.items()}
        row.update(
            DisplayName=display,
            Caption=display,
            StartMode=start,
            State="Running" if running else "Stopped",
            Started=str(running),
            ProcessId=str(pid if running else 0),
        )
        writer.writerow(row)
    path.write_bytes(out.getvalue().encode("utf-8"))
    return path


def write_site(tmp_path: Path) -> tuple[Path, Path]:
    profile = tmp_path / "site.yaml"
    profile.write_text(
        'exchange_version: "2010"\n'
        "published: [owa, outlook-anywhere, activesync]\n"
        "internal_name: cas.contoso.local\n"
        "internal_addresses: [192.0.2.11, 192.0.2.12]\n"
        "tmg_addresses: [192.0.2.1]\n",
        encoding="utf-8",
    )
    answers = tmp_path / "answers.yaml"
    answers.write_text('users-report-failures: "yes"\n', encoding="utf-8")
    return profile, answers


def run_json(cli: Any, tmp_path: Path, exports: Sequence[Path]) -> dict[str, Any]:
    profile, answers = write_site(tmp_path)
    args = [a for e in exports for a in ("--services-export", str(e))]
    done = cli(
        "run",
        *args,
        "--profile",
        str(profile),
        "--answers",
        str(answers),
        "--offline",
        "--no-input",
        "--format",
        "json",
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_stopped_protected_service_host_on_one_of_two_cas_is_established(cli: Any, tmp_path: Path) -> None:
    cas01 = win32_service_export(tmp_path / "cas01.csv", "CAS01", stopped=())
    cas02 = win32_service_export(tmp_path / "cas02.csv", "CAS02", stopped=("MSExchangeProtectedServiceHost",))
    out = run_json(cli, tmp_path, [cas01, cas02])
    top = out["causes"][0]
    assert top["id"] == "exchange-service-stopped"
    assert top["certainty"] >= 0.5
    assert out["verdict"] == "fault"
    assert "exchange-service-stopped-required" in [r["id"] for r in top["rules"]]
    text = json.dumps(top)
    assert "CAS02" in text and "MSExchangeProtectedServiceHost" in text
    assert "CAS01" not in text  # the healthy CAS is not blamed
    # both exports were read, each fact keeping its own file
    states = [f for f in out["facts"] if f["kind"] == "service.state"]
    assert {f["attrs"]["host"] for f in states} == {"CAS01", "CAS02"}
    sources = {f["attrs"]["host"]: f["provenance"]["source"] for f in states}
    assert sources == {"CAS01": str(cas01), "CAS02": str(cas02)}
    assert not [c for c in out["causes"] if c["id"] == "unexplained-user-impact" and c["certainty"] >= 0.5]


def test_both_cas_healthy_leaves_the_failures_unexplained(cli: Any, tmp_path: Path) -> None:
    cas01 = win32_service_export(tmp_path / "cas01.csv", "CAS01", stopped=())
    cas02 = win32_service_export(tmp_path / "cas02.csv", "CAS02", stopped=())
    out = run_json(cli, tmp_path, [cas01, cas02])
    assert not [c for c in out["causes"] if c["id"] == "exchange-service-stopped"]
    assert out["causes"][0]["id"] == "unexplained-user-impact"
    assert out["verdict"] == "inconclusive"


@pytest.mark.parametrize(
    ("stopped", "rule"),
    [
        ("MSExchangeAB", "exchange-service-stopped-required-some-published"),  # OA is one of three published
        ("MSExchangeServiceHost", "exchange-service-stopped-required"),
    ],
)
def test_other_required_cas_services_are_established(cli: Any, tmp_path: Path, stopped: str, rule: str) -> None:
    cas01 = win32_service_export(tmp_path / "cas01.csv", "CAS01", stopped=(stopped,))
    out = run_json(cli, tmp_path, [cas01])
    top = out["causes"][0]
    assert (top["id"], out["verdict"]) == ("exchange-service-stopped", "fault")
    assert rule in [r["id"] for r in top["rules"]] and top["certainty"] >= 0.5
