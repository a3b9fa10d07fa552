"""`diagnose run` from an exported service list, end to end through the real probe path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "services"
FBA_CAUSE = REPO / "rules" / "causes" / "exchange-fba-service-stopped.yaml"


def write_profile(tmp_path: Path, version: str, published: list[str]) -> Path:
    profile = tmp_path / "site.yaml"
    profile.write_text(
        f'exchange_version: "{version}"\n'
        f"published: [{', '.join(published)}]\n"
        "internal_addresses: [192.0.2.10]\n"  # documentation addresses: nothing is sent to them
        "tmg_addresses: [192.0.2.1]\n"  # not this machine, so its own TCP state stays out of the diagnosis
    )
    return profile


def run_json(cli: Any, *args: str) -> dict[str, Any]:
    done = cli("run", *args, "--no-input", "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(not FBA_CAUSE.exists(), reason="the lead's exchange-fba-service-stopped cause is not merged yet")
@pytest.mark.parametrize("export", ["get-service-ps51.json", "get-service-ps4-wrapped.json", "sc-queryex-de.txt"])
def test_fba_stopped_export_ranks_fba_first(cli: Any, tmp_path: Path, export: str) -> None:
    profile = write_profile(tmp_path, "2010", ["owa"])
    out = run_json(cli, "--services-export", str(DATA / export), "--profile", str(profile))
    assert out["causes"], out
    assert out["causes"][0]["id"] == "exchange-fba-service-stopped"
    services = [p for p in out["probes"] if p["check"] == "exchange-services"]
    assert services and services[0]["status"] == "complete"


def test_stopped_rpc_client_access_ranks_exchange_service_stopped(cli: Any, tmp_path: Path) -> None:
    profile = write_profile(tmp_path, "2016", ["outlook-anywhere", "owa"])
    out = run_json(cli, "--services-export", str(DATA / "get-service-ps7-enums.json"), "--profile", str(profile))
    top = out["causes"][0]
    assert top["id"] == "exchange-service-stopped"
    assert top["certainty"] == pytest.approx(0.7)
    assert out["verdict"] == "fault"


def test_running_services_give_no_service_cause(cli: Any, tmp_path: Path) -> None:
    export = tmp_path / "all-running.json"
    records = json.loads((DATA / "get-service-ps7-enums.json").read_text(encoding="utf-8"))
    for r in records:
        r["Status"] = "Running"
    export.write_text(json.dumps(records), encoding="utf-8")
    profile = write_profile(tmp_path, "2016", ["outlook-anywhere", "owa"])
    out = run_json(cli, "--services-export", str(export), "--profile", str(profile))
    assert not [c for c in out["causes"] if c["id"] in ("exchange-service-stopped", "exchange-fba-service-stopped")]


def test_run_with_garbled_export_is_one_error_line(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "services.csv"
    bad.write_text('#TYPE System.ServiceProcess.ServiceController\n"Name","Status"\n"W3SVC","Running","x"\n')
    done = cli("run", "--services-export", str(bad), "--no-input", "--format", "json")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"diagnose: error: {bad}:3: 3 fields where the header has 2 (cut off or garbled?)"
    ]
