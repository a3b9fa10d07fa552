"""The services probe through its one backend interface, and its facts; the CLI as a user runs it.

The Windows service manager cannot exist on this machine, so the psutil backend is driven by a
recorded psutil module (the real `WindowsService.as_dict()` shapes in tests/data/services) and the
`sc \\\\HOST` backend by a stand-in `sc` program printing recorded `sc query` / `sc qc` text. Neither has
been run against a real Windows host from this suite.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from diagnose.collect import plan_check
from diagnose.facts import Fact, ProbeStatus
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext
from diagnose.probes.services.catalogue import load_catalogue
from diagnose.probes.services.probe import (
    ExportBackend,
    PsutilBackend,
    ScBackend,
    ServicesParams,
    SystemdBackend,
    choose_backend,
    probe,
)
from diagnose.profile import SiteProfile

DATA = Path(__file__).resolve().parents[2] / "data" / "services"


class RecordedWindowsService:
    """psutil.WindowsService's interface over one recorded `as_dict()`."""

    def __init__(self, recorded: dict[str, Any], denied: bool = False) -> None:
        self._d = recorded
        self._denied = denied

    def name(self) -> str:
        return self._d["name"]

    def display_name(self) -> str:
        return self._d["display_name"]

    def as_dict(self) -> dict[str, Any]:
        if self._denied:
            raise psutil.AccessDenied(
                pid=None,
                name=self._d["name"],
                msg=f"service {self._d['name']!r} is not querable (not enough privileges)",
            )
        return dict(self._d)


class RecordedPsutil:
    """The two psutil service calls (and psutil.Error) over a recording."""

    Error = psutil.Error

    def __init__(self, recorded: list[dict[str, Any]], denied: set[str] = frozenset()) -> None:
        self.services = [RecordedWindowsService(r, r["name"] in denied) for r in recorded]

    def win_service_iter(self) -> Any:
        return iter(self.services)

    def win_service_get(self, name: str) -> RecordedWindowsService:
        for s in self.services:
            if s.name().lower() == name.lower():
                return s
        raise psutil.NoSuchProcess(pid=None, name=name, msg=f"service {name!r} does not exist")


def recorded_services() -> list[dict[str, Any]]:
    return json.loads((DATA / "psutil-win-services.json").read_text(encoding="utf-8"))


def facts_of(result: Any, kind: str) -> dict[str, Fact]:
    return {f.get("name") or f.get("service"): f for f in result.facts if f.kind == kind}


def ctx() -> ProbeContext:
    return ProbeContext(check="services")


def params(spec: dict[str, Any], **profile: Any) -> ServicesParams:
    """The spec over the catalogue's check filled from a profile with these fields, as `collect` reads it."""
    return plan_check("services", spec, SiteProfile(**profile), check_id="exchange-services")[1]  # type: ignore[return-value]


# ------------------------------------------------------------------------------- psutil path


def test_recording_has_psutils_real_as_dict_keys() -> None:
    keys = {"name", "display_name", "binpath", "username", "start_type", "status", "pid", "description"}
    assert all(set(r) == keys for r in recorded_services())
    statuses = {r["status"] for r in recorded_services()}
    assert statuses <= {
        "running",
        "paused",
        "start_pending",
        "pause_pending",
        "continue_pending",
        "stop_pending",
        "stopped",
    }


def test_psutil_backend_reads_tmg_services() -> None:
    backend = PsutilBackend(api=RecordedPsutil(recorded_services()), host="tmg01")
    result = probe(ctx(), params({}, published=("owa", "activesync")), backend=backend)
    assert result.status == ProbeStatus.COMPLETE
    state = facts_of(result, "service.state")
    assert set(state) == {"fwsrv", "isactrl", "isasched", "isastg", "MSSQL$MSFW", "MSSQL$ISARS", "W3SVC"}
    assert "Spooler" not in state  # not in the catalogue
    assert state["fwsrv"].attrs["state"] == "running" and state["fwsrv"].attrs["role"] == "tmg"
    assert state["MSSQL$MSFW"].attrs["state"] == "stop-pending"
    assert state["W3SVC"].attrs["display_name"] == "WWW-Publishingdienst"
    assert state["isasched"].subject == "tmg01/isasched"
    assert all(f.attrs["backend"] == "psutil" and f.attrs["host"] == "tmg01" for f in state.values())
    impact = facts_of(result, "service.protocol_impact")
    # W3SVC is stopped on this TMG server, which has no Exchange service: IIS is not Exchange's here
    assert state["W3SVC"].attrs["role"] == "other"
    assert set(impact) == {"isasched", "MSSQL$MSFW"}
    assert impact["isasched"].attrs["impact"] == 0.0
    fact_kinds().check(result.facts, "psutil")


def test_psutil_access_denied_makes_the_read_partial() -> None:
    backend = PsutilBackend(api=RecordedPsutil(recorded_services(), denied={"fwsrv"}), host="tmg01")
    result = probe(ctx(), params({}), backend=backend)
    assert result.status == ProbeStatus.PARTIAL
    assert "fwsrv" in result.reason and "not querable" in result.reason
    assert "fwsrv" not in facts_of(result, "service.state")


def test_psutil_service_calls_unavailable_on_this_platform() -> None:
    if hasattr(psutil, "win_service_iter"):
        pytest.skip("this platform has psutil service calls")
    result = probe(ctx(), params({}), backend=PsutilBackend(api=psutil))
    assert result.status == ProbeStatus.UNAVAILABLE
    assert result.facts == ()
    assert "not available on this platform" in result.reason


# ------------------------------------------------------------------------------------- sc path


def fake_sc(tmp_path: Path, mode: str = "ok") -> tuple[str, Path]:
    """A stand-in `sc` program: prints recorded sc text for the arguments it gets, logs its argv."""
    log = tmp_path / "sc-argv.jsonl"
    script = tmp_path / "sc"
    script.write_text(f"""#!{sys.executable}
import json, sys
from pathlib import Path
data = Path({str(DATA)!r})
with open({str(log)!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
mode = {mode!r}
if mode == "unreachable":
    sys.stdout.write("[SC] OpenSCManager FAILED 1722:\\r\\n\\r\\nThe RPC server is unavailable.\\r\\n\\r\\n")
    sys.exit(1722)
args = sys.argv[2:]
if args[0] == "query":
    sys.stdout.buffer.write((data / "sc-query-cas2010.txt").read_bytes())
elif args[0] == "qc":
    name = args[1]
    recorded = data / f"sc-qc-{{name.lower()}}.txt"
    if recorded.exists():
        sys.stdout.buffer.write(recorded.read_bytes())
    elif mode == "qc-denied" and name == "MSExchangeAB":
        sys.stdout.write("[SC] OpenService FAILED 5:\\r\\n\\r\\nAccess is denied.\\r\\n\\r\\n")
        sys.exit(5)
    else:
        start = "3   DEMAND_START" if name in ("MSExchangeIMAP4", "WAS") else "2   AUTO_START"
        sys.stdout.write(f"[SC] QueryServiceConfig SUCCESS\\r\\n\\r\\nSERVICE_NAME: {{name}}\\r\\n"
                         f"        TYPE               : 10  WIN32_OWN_PROCESS\\r\\n"
                         f"        START_TYPE         : {{start}}\\r\\n"
                         f"        DISPLAY_NAME       : {{name}}\\r\\n")
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), log


def test_sc_backend_runs_query_then_qc_with_argument_lists(tmp_path: Path) -> None:
    sc, log = fake_sc(tmp_path)
    backend = ScBackend("cas01.example.org", sc_path=sc)
    result = probe(ctx(), params({}, exchange_version="2010", published=("owa",)), backend=backend)
    assert result.status == ProbeStatus.COMPLETE, result.reason
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0] == ["\\\\cas01.example.org", "query", "type=", "service", "state=", "all"]
    assert ["\\\\cas01.example.org", "qc", "MSExchangeFBA"] in calls
    assert ["\\\\cas01.example.org", "qc", "AeLookupSvc"] not in calls  # only catalogue services
    state = facts_of(result, "service.state")
    assert state["MSExchangeFBA"].attrs["start_type"] == "automatic"
    assert state["MSExchangeFBA"].attrs["backend"] == "sc"
    assert state["MSExchangeFBA"].subject == "cas01.example.org/MSExchangeFBA"
    assert state["MSExchangeIMAP4"].attrs["start_type"] == "manual"
    impact = facts_of(result, "service.protocol_impact")
    assert set(impact) == {"MSExchangeFBA"}  # IMAP4 is stopped but manual
    assert impact["MSExchangeFBA"].attrs["impact"] == 1.0
    assert impact["MSExchangeFBA"].provenance.source == "sc \\\\cas01.example.org query"


def test_sc_backend_unreachable_host_is_unavailable(tmp_path: Path) -> None:
    sc, _ = fake_sc(tmp_path, "unreachable")
    result = probe(ctx(), params({}), backend=ScBackend("192.0.2.10", sc_path=sc))
    assert result.status == ProbeStatus.UNAVAILABLE
    assert "1722" in result.reason and "RPC server is unavailable" in result.reason


def test_sc_backend_qc_denied_is_partial(tmp_path: Path) -> None:
    sc, _ = fake_sc(tmp_path, "qc-denied")
    result = probe(ctx(), params({}), backend=ScBackend("cas01", sc_path=sc))
    assert result.status == ProbeStatus.PARTIAL
    assert "MSExchangeAB" in result.reason and "Access is denied" in result.reason
    assert "start_type" not in facts_of(result, "service.state")["MSExchangeAB"].attrs


def test_sc_backend_without_sc_exe_here() -> None:
    if sys.platform == "win32":
        pytest.skip("sc.exe exists on Windows")
    result = probe(ctx(), params({"host": "cas01.example.org"}))
    assert result.status == ProbeStatus.UNAVAILABLE and "sc.exe not found" in result.reason


def test_host_names_are_checked_before_any_command() -> None:
    from diagnose.errors import UsageError

    with pytest.raises(UsageError):
        ScBackend("cas01 & calc")
    with pytest.raises(UsageError):
        ScBackend("-x")


# ---------------------------------------------------------------------------------- systemd path


def test_systemd_backend_with_recorded_systemctl(tmp_path: Path) -> None:
    script = tmp_path / "systemctl"
    log = tmp_path / "argv"
    script.write_text(f'#!/bin/sh\necho "$@" > {log}\ncat {DATA / "systemctl-show.txt"}\n')
    script.chmod(0o755)
    result = probe(ctx(), params({}, published=("owa",)), backend=SystemdBackend(systemctl=str(script)))
    argv = log.read_text().split()
    assert argv[:3] == ["show", "-p", SystemdBackend.PROPERTIES] and "haproxy.service" in argv
    state = facts_of(result, "service.state")
    assert state["haproxy"].attrs["state"] == "stopped" and state["haproxy"].attrs["role"] == "proxy"
    assert facts_of(result, "service.protocol_impact")["haproxy"].attrs["impact"] == 1.0


# --------------------------------------------------------------------------------- facts & impact


@pytest.mark.parametrize(
    ("name", "version", "published", "impact", "affected"),
    [
        ("get-service-ps51.json", "2010", ("owa",), 1.0, ("owa",)),
        ("get-service-ps51.json", "2010", ("owa", "activesync", "ews", "outlook-anywhere"), 0.25, ("owa",)),
        ("get-service-ps51.json", "2010", ("activesync",), 0.0, ()),
        ("get-service-de-useculture.csv", "2007", ("owa", "ecp"), 1.0, ("owa", "ecp")),
    ],
)
def test_fba_impact_on_published_protocols(
    name: str, version: str, published: tuple[str, ...], impact: float, affected: tuple[str, ...]
) -> None:
    result = probe(ctx(), params({"export": str(DATA / name)}, exchange_version=version, published=published))
    fba = facts_of(result, "service.protocol_impact")["MSExchangeFBA"]
    assert fba.attrs["impact"] == impact
    assert fba.attrs["published_affected"] == affected
    assert fba.attrs["protocols"] == ("owa", "ecp")
    assert fba.attrs["basis"] == "documented"


def test_fba_has_no_impact_on_exchange_2013() -> None:
    # MSExchangeFBA does not exist in 2013+: a leftover entry in an export is not rated
    result = probe(
        ctx(), params({"export": str(DATA / "get-service-ps51.json")}, exchange_version="2013", published=("owa",))
    )
    assert "MSExchangeFBA" in facts_of(result, "service.state")
    assert "MSExchangeFBA" not in facts_of(result, "service.protocol_impact")


def test_unknown_published_leaves_impact_unknown() -> None:
    result = probe(ctx(), params({"export": str(DATA / "get-service-ps51.json")}))
    fba = facts_of(result, "service.protocol_impact")["MSExchangeFBA"]
    assert "impact" not in fba.attrs and "published_affected" not in fba.attrs
    assert "impact is not rated" in result.reason


def test_spec_overrides_profile_and_provenance_names_file_and_record() -> None:
    export = DATA / "get-service-ps4-wrapped.json"
    result = probe(
        ctx(),
        params(
            {"export": str(export), "exchange_version": "2010", "published": ["owa", "ecp"]},
            exchange_version="2016",
            published=("ews",),
        ),
    )
    impact = facts_of(result, "service.protocol_impact")
    psh = impact["MSExchangeProtectedServiceHost"]
    assert psh.attrs["exchange_version"] == "2010" and psh.attrs["impact"] == 1.0
    assert psh.attrs["basis"] == "practitioner"
    assert psh.provenance.source == str(export) and psh.provenance.location == "$.value[2]"
    assert result.excerpts[f"{export}:$.value[2]"] == "MSExchangeProtectedServiceHost: Status 1"


def test_localised_display_names_match_on_short_names() -> None:
    for name in ("sc-queryex-de.txt", "get-service-de-useculture.csv"):
        result = probe(ctx(), params({"export": str(DATA / name)}, exchange_version="2010", published=("owa",)))
        state = facts_of(result, "service.state")
        assert state["W3SVC"].attrs["display_name"] == "WWW-Publishingdienst"
        assert state["MSExchangeFBA"].attrs["state"] == "stopped"
        assert facts_of(result, "service.protocol_impact")["MSExchangeFBA"].attrs["impact"] == 1.0


def test_catalogue_versions() -> None:
    cat = load_catalogue()
    fba = cat.lookup("msexchangefba")
    assert fba is not None and fba.versions == ("2007", "2010")
    assert cat.lookup("MSExchangeRPC").versions == ("2010", "2013", "2016", "2019", "SE")
    tmg = {s.name for s in cat.services if s.role == "tmg"}
    assert {"fwsrv", "isactrl", "isasched", "isastg", "MSSQL$MSFW", "MSSQL$ISARS"} <= tmg


def test_every_export_gives_valid_facts() -> None:
    for path in sorted(DATA.iterdir()):
        if path.suffix in (".md",) or path.name.startswith("sc-qc"):
            continue
        result = probe(
            ctx(), params({"export": str(path)}, exchange_version="2010", published=("owa", "outlook-anywhere"))
        )
        assert result.facts, path
        fact_kinds().check(result.facts, str(path))


def test_choose_backend() -> None:
    assert isinstance(choose_backend({"export": "x.csv"}), ExportBackend)
    assert isinstance(choose_backend({"host": "cas01"}), ScBackend)
    from diagnose.errors import UsageError

    with pytest.raises(UsageError):
        choose_backend({"export": "x.csv", "host": "cas01"})


# ------------------------------------------------------------------------------------------ CLI


def test_cli_services_export_json(cli: Any, tmp_path: Path) -> None:
    profile = tmp_path / "site.yaml"
    profile.write_text("exchange_version: '2010'\npublished: [owa, activesync]\n")
    done = cli(
        "probe",
        "services",
        "--services-export",
        str(DATA / "get-service-ps51.csv"),
        "--profile",
        str(profile),
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["probe"]["status"] == "complete"
    impact = [f for f in out["facts"] if f["kind"] == "service.protocol_impact"]
    assert [(f["attrs"]["service"], f["attrs"]["impact"]) for f in impact] == [("MSExchangeFBA", 0.5)]
    assert impact[0]["provenance"]["location"] == "line 6"


def test_cli_missing_export_is_one_error_line(cli: Any, tmp_path: Path) -> None:
    done = cli("probe", "services", "--services-export", str(tmp_path / "missing.json"))
    assert done.returncode == 2
    assert done.stderr == f"diagnose: error: {tmp_path / 'missing.json'}: services export not found\n"


def test_cli_garbled_export_is_one_error_line(cli: Any, tmp_path: Path) -> None:
    bad = tmp_path / "services.json"
    bad.write_text('[\n  {"Name": "MSExchangeFBA", "Status": 1},\n  {"Name": "W3SVC", "Status": \n')
    done = cli("probe", "services", "--services-export", str(bad))
    assert done.returncode == 2
    assert done.stderr.startswith(f"diagnose: error: {bad}:4: malformed JSON")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_cli_local_services_unavailable_here_not_healthy(cli: Any) -> None:
    if sys.platform == "win32" or os.path.isdir("/run/systemd/system"):
        pytest.skip("this machine has a service manager the probe can read")
    done = cli("probe", "services", "--format", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["probe"]["status"] == "unavailable"
    assert out["facts"] == []
    assert "not available on this platform" in out["probe"]["reason"]


def test_cli_export_and_host_together_is_a_usage_error(cli: Any) -> None:
    done = cli("probe", "services", "--services-export", "a.json", "--services-host", "cas01")
    assert done.returncode == 2 and "not both" in done.stderr


def test_all_reports_services_outside_the_catalogue() -> None:
    result = probe(ctx(), params({"export": str(DATA / "get-service-ps51.csv"), "all": True}))
    state = facts_of(result, "service.state")
    assert state["Spooler"].attrs["role"] == "other"
    assert "Spooler" not in facts_of(result, "service.protocol_impact")
    assert "Spooler" not in facts_of(
        probe(ctx(), params({"export": str(DATA / "get-service-ps51.csv")})), "service.state"
    )
