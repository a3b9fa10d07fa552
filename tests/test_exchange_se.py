"""Exchange Server SE (Subscription Edition, the successor of 2019 CU15) end to end: a profile naming it
"SE" or "Subscription Edition" has the http probe request 2019's endpoints from a CAS on loopback, and
the services probe rate a recorded export against 2019's service list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.probes.test_http import healthy, host, issued  # noqa: F401 - the loopback CAS fixtures
from tests.servers import TlsServer
from tests.test_run_required_services import win32_service_export

# an Exchange 2019 / SE Mailbox server (Client Access services included): (short name, display name, StartMode)
MAILBOX_2019 = (
    ("IISADMIN", "IIS Admin Service", "Auto"),
    ("MSExchangeADTopology", "Microsoft Exchange Active Directory Topology", "Auto"),
    ("MSExchangeFrontendTransport", "Microsoft Exchange Frontend Transport", "Auto"),
    ("MSExchangeIS", "Microsoft Exchange Information Store", "Auto"),
    ("MSExchangeRPC", "Microsoft Exchange RPC Client Access", "Auto"),
    ("MSExchangeServiceHost", "Microsoft Exchange Service Host", "Auto"),
    ("W3SVC", "World Wide Web Publishing Service", "Auto"),
    # left over in a 2010-era export template: not installed by 2019 or SE, so never rated there
    ("MSExchangeFBA", "Microsoft Exchange Forms-Based Authentication service", "Auto"),
)


def _profile(tmp_path: Path, version: str, address: str = "192.0.2.11") -> Path:
    profile = tmp_path / "site.yaml"
    profile.write_text(
        f"exchange_version: {version}\npublished: [owa, outlook-anywhere, activesync]\n"
        f"internal_name: cas01.contoso.local\ninternal_addresses: ['{address}']\n"
        "tmg_addresses: [192.0.2.1]\n",
        encoding="utf-8",
    )
    return profile


def _requests(server: TlsServer, tmp_path: Path, version: str) -> tuple[list[str], dict[str, Any]]:
    before = len(server.requests)
    proc = run_cli(
        "probe",
        "http",
        "--profile",
        str(_profile(tmp_path, version, server.host)),
        "--port",
        str(server.port),
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    facts = {f"{f['attrs']['method']} {f['attrs']['path']}": f["attrs"] for f in json.loads(proc.stdout)["facts"]}
    return [f"{m} {p}" for m, p, _headers in server.requests[before:]], facts


@pytest.mark.parametrize("version", ["SE", "'Subscription Edition'", "subscription edition"])
def test_the_http_probe_requests_the_2019_endpoints_for_se(
    healthy: TlsServer,  # noqa: F811
    tmp_path: Path,
    version: str,
) -> None:
    asked, facts = _requests(healthy, tmp_path, version)
    asked_2019, facts_2019 = _requests(healthy, tmp_path, "'2019'")
    assert sorted(asked) == sorted(asked_2019) and list(facts) == list(facts_2019)
    assert "POST /owa/auth.owa" in asked and "GET /owa/healthcheck.htm" in asked
    assert "POST /owa/auth/owaauth.dll" not in asked  # the 2007/2010 logon form target


def _run(tmp_path: Path, version: str, stopped: tuple[str, ...]) -> dict[str, Any]:
    export = win32_service_export(tmp_path / "ex01.csv", "EX01", stopped, MAILBOX_2019)
    answers = tmp_path / "answers.yaml"
    answers.write_text('users-report-failures: "yes"\n', encoding="utf-8")
    done = run_cli(
        "run",
        "--services-export",
        str(export),
        "--profile",
        str(_profile(tmp_path, version)),
        "--answers",
        str(answers),
        "--offline",
        "--no-input",
        "--format",
        "json",
    )
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("version", ["SE", "Subscription Edition"])
def test_a_stopped_required_service_on_se_is_established(tmp_path: Path, version: str) -> None:
    d = _run(tmp_path, version, ("MSExchangeServiceHost",))
    site = next(f["attrs"] for f in d["facts"] if f["kind"] == "site.profile")
    assert site["exchange_version"] == "SE"
    impact = next(f["attrs"] for f in d["facts"] if f["kind"] == "service.protocol_impact")
    assert (impact["service"], impact["exchange_version"]) == ("MSExchangeServiceHost", "SE")
    assert impact["required_roles"] == ["client-access", "mailbox"]
    top = d["causes"][0]
    assert (top["id"], d["verdict"]) == ("exchange-service-stopped", "fault") and top["certainty"] >= 0.5


def test_a_2010_only_service_is_not_rated_on_se(tmp_path: Path) -> None:
    """MSExchangeFBA stopped: an outage on 2010, nothing on SE (2019's list has no FBA service)."""
    on_se = _run(tmp_path, "SE", ("MSExchangeFBA",))
    assert not [f for f in on_se["facts"] if f["kind"] == "service.protocol_impact"]
    on_2010 = _run(tmp_path, "'2010'", ("MSExchangeFBA",))
    assert [f["attrs"]["service"] for f in on_2010["facts"] if f["kind"] == "service.protocol_impact"] == [
        "MSExchangeFBA"
    ]


def test_an_unknown_version_is_one_line_naming_the_profile(tmp_path: Path) -> None:
    done = run_cli("run", "--profile", str(_profile(tmp_path, "'Subscription'")), "--offline", "--no-input")
    assert done.returncode == 3 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'site.yaml'}:1" in done.stderr and "2019, SE" in done.stderr
