"""The http probe against HTTPS servers on loopback imitating an Exchange 2010 CAS, healthy and with FBA down."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from diagnose.collect import plan_check
from diagnose.kinds import fact_kinds
from diagnose.probes import ProbeContext, run_probe
from diagnose.probes.http import Expectation, judge
from diagnose.profile import PROTOCOLS, SiteProfile
from tests.certs import CertFactory
from tests.conftest import run_cli
from tests.servers import (
    LOOPBACK,
    LOOPBACK6,
    LOOPBACKS,
    SilentPeer,
    TlsServer,
    TricklingServer,
    closed_port,
    host_port,
    owa_app,
    requires_ipv6,
)

INTERNAL_NAME = "cas01.contoso.local"


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return CertFactory(tmp_path_factory.mktemp("certs")).issue(INTERNAL_NAME, san=[INTERNAL_NAME])


@pytest.fixture(scope="module", params=LOOPBACKS)
def host(request: pytest.FixtureRequest) -> str:
    """The CAS's address: every test using the servers below runs over IPv4 and over IPv6."""
    return str(request.param)


@pytest.fixture(scope="module")
def healthy(issued: Any, host: str) -> Iterator[TlsServer]:
    with TlsServer(issued, app=owa_app(), host=host) as server:
        yield server


@pytest.fixture(scope="module")
def fba_down(issued: Any, host: str) -> Iterator[TlsServer]:
    with TlsServer(issued, app=owa_app(fba_running=False), host=host) as server:
        yield server


def probe_site(
    server: TlsServer | int, host: str = LOOPBACK, internal_name: str | None = INTERNAL_NAME, **spec: Any
) -> dict[str, dict[str, Any]]:
    port, host = (server, host) if isinstance(server, int) else (server.port, server.host)
    profile = SiteProfile(
        internal_name=internal_name, internal_addresses=(host,), published=PROTOCOLS, exchange_version="2010"
    )
    result, run = run_probe(
        "http", ProbeContext(), plan_check("http", {"port": port, "timeout": 1.0, **spec}, profile)[1]
    )
    fact_kinds().check(result.facts, "http probe")
    assert run.status.value == "complete"
    return {f"{f.attrs['method']} {f.attrs['path']}": dict(f.attrs) for f in result.facts}


def test_healthy_owa(healthy: TlsServer) -> None:
    facts = probe_site(healthy)
    assert list(facts) == [
        "GET /owa/",
        "GET /owa/auth/logon.aspx",
        "POST /owa/auth/owaauth.dll",
        "GET /ecp/",
        "GET /rpc/rpcproxy.dll",
        "GET /Microsoft-Server-ActiveSync",
        "GET /EWS/Exchange.asmx",
        "GET /autodiscover/autodiscover.xml",
    ]
    assert all(f["healthy"] and f["outcome"] == "ok" for f in facts.values()), facts
    owa = facts["GET /owa/"]
    assert owa["status"] == 302 and "/owa/auth/logon.aspx" in owa["location"]
    assert owa["url"] == f"https://{INTERNAL_NAME}:{healthy.port}/owa/" and owa["address"] == healthy.host
    assert facts["GET /rpc/rpcproxy.dll"]["auth_schemes"] == ("Negotiate", "NTLM", "Basic")
    assert facts["GET /rpc/rpcproxy.dll"]["protocol"] == "outlook-anywhere"
    # like TMG, the probe sends the internal name as Host header (with the URL's port: it is not 443,
    # RFC 7230 5.4) and as SNI
    assert {headers["host"] for _m, _p, headers in healthy.requests} == {f"{INTERNAL_NAME}:{healthy.port}"}
    assert set(healthy.server_names) == {INTERNAL_NAME}


def test_owa_with_forms_based_authentication_down(fba_down: TlsServer) -> None:
    facts = probe_site(fba_down)
    post = facts["POST /owa/auth/owaauth.dll"]
    assert (post["status"], post["outcome"], post["healthy"]) == (200, "blank", False)
    assert "MSExchangeFBA" in post["reason"]
    # the logon page still renders and the other protocols are unaffected: a protocol-selective failure
    unhealthy = [k for k, f in facts.items() if not f["healthy"]]
    assert unhealthy == ["POST /owa/auth/owaauth.dll"]


def test_reset_in_mid_response(issued: Any, host: str) -> None:
    with TlsServer(issued, app=owa_app(reset_ews=True), host=host) as server:
        facts = probe_site(server, published=["ews"])
    ews = facts["GET /EWS/Exchange.asmx"]
    assert (ews["status"], ews["outcome"], ews["healthy"]) == (401, "reset", False)
    assert "reset in mid-response" in ews["reason"]


def test_refused_and_timeout(host: str) -> None:
    facts = probe_site(closed_port(host), host, published=["activesync"])
    assert facts["GET /Microsoft-Server-ActiveSync"]["outcome"] == "refused"
    with SilentPeer(host) as silent:
        facts = probe_site(silent.port, host, published=["activesync"], timeout=0.3)
    silent_fact = facts["GET /Microsoft-Server-ActiveSync"]
    assert (silent_fact["outcome"], silent_fact["healthy"]) == ("timeout", False)


def test_an_address_without_a_name_is_its_own_host_header(fba_down: TlsServer) -> None:
    """A profile with the CAS's address but no internal name: the URL and the Host header carry the address
    literal with the port (RFC 7230 5.4; IPv6 in brackets: `[::1]:PORT`), no SNI is sent, and the
    forms-based authentication signature still shows."""
    before = len(fba_down.requests)
    facts = probe_site(fba_down, internal_name=None, published=["owa", "ews"])
    literal = host_port(fba_down.host, fba_down.port)
    assert facts["GET /owa/"]["url"] == f"https://{literal}/owa/"
    assert {headers["host"] for _m, _p, headers in fba_down.requests[before:]} == {literal}
    assert set(fba_down.server_names[before:]) == {None}
    post = facts["POST /owa/auth/owaauth.dll"]
    assert (post["status"], post["outcome"], post["address"]) == (200, "blank", fba_down.host)
    assert [k for k, f in facts.items() if not f["healthy"]] == ["POST /owa/auth/owaauth.dll"]
    # the redirect the server built from that Host header is a valid URL, and judged healthy
    assert facts["GET /owa/"]["location"].startswith(f"https://{literal}/owa/auth/logon.aspx")
    assert facts["GET /owa/"]["healthy"] is True


def test_healthcheck_pages_for_exchange_2013_and_later(healthy: TlsServer) -> None:
    facts = probe_site(healthy, published=["ews"], exchange_version="2016")
    check = facts["GET /ews/healthcheck.htm"]
    assert (check["status"], check["outcome"], check["protocol"]) == (404, "absent", "healthcheck")


@pytest.mark.parametrize(
    ("status", "location", "schemes", "body", "outcome"),
    [
        (302, "https://cas/owa/auth/logon.aspx?reason=0", [], b"", "ok"),
        (302, "https://cas/owa/error.aspx", [], b"", "unexpected"),
        (401, None, [], b"", "unexpected"),
        (200, None, [], b"  \r\n", "blank"),
        (503, None, [], b"Service Unavailable", "unexpected"),
        (400, None, [], b"Bad Request - Invalid Hostname", "unexpected"),
    ],
)
def test_judging_owa(status: int, location: str | None, schemes: list[str], body: bytes, outcome: str) -> None:
    owa = Expectation(
        "owa", "/owa/", frozenset({302, 401}), "302 or 401", redirect_to="/owa/auth/logon.aspx", empty_ok=False
    )
    assert judge(owa, status, location, schemes, body)[:2] == (outcome, outcome == "ok")


def test_logon_page_without_its_form() -> None:
    logon = Expectation("owa", "/owa/auth/logon.aspx", frozenset({200, 401}), "200", form=True, empty_ok=False)
    assert judge(logon, 200, None, [], b"<html><body>Sorry</body></html>")[0] == "no-form"


def test_cli_http_urls(healthy: TlsServer) -> None:
    proc = run_cli(
        "probe",
        "http",
        f"https://{INTERNAL_NAME}:{healthy.port}/owa/",
        f"https://{INTERNAL_NAME}:{healthy.port}/unknown",
        "--connect",
        healthy.host,
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    owa, unknown = json.loads(proc.stdout)["facts"]
    assert owa["attrs"]["healthy"] is True and owa["attrs"]["protocol"] == "owa"
    assert unknown["attrs"]["status"] == 404 and unknown["attrs"]["healthy"] is False
    proc = run_cli("probe", "http", "ftp://cas01/")
    assert proc.returncode == 2 and "give an http:// or https:// URL" in proc.stderr


@requires_ipv6
def test_cli_http_ipv6_url(issued: Any) -> None:
    with TlsServer(issued, app=owa_app(), host=LOOPBACK6) as server:
        proc = run_cli(
            "probe",
            "http",
            f"https://[0:0::1]:{server.port}/owa/auth/logon.aspx",
            f"https://[::1]:{server.port}/owa/",
            "--format",
            "json",
        )
        hosts = {h["host"] for _m, _p, h in server.requests}
    assert proc.returncode == 0, proc.stderr
    logon, owa = json.loads(proc.stdout)["facts"]
    assert (logon["attrs"]["healthy"], logon["attrs"]["address"]) == (True, "::1")
    assert owa["subject"] == f"https://[::1]:{server.port}/owa/" and owa["attrs"]["healthy"] is True
    assert hosts == {f"[::1]:{server.port}"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://[::1/owa/", "'https://[::1/owa/': not a valid URL (Invalid IPv6 URL)"),
        (
            "https://::1/owa/",
            "'https://::1/owa/': not a valid URL (Port could not be cast to integer value as ':1'); "
            "an IPv6 address goes in brackets: https://[fd00::11]:443/",
        ),
        ("https://[::1]:99999/", "'https://[::1]:99999/': not a valid URL (Port out of range 0-65535)"),
    ],
)
def test_cli_http_bad_ipv6_urls_give_one_line(url: str, message: str) -> None:
    proc = run_cli("probe", "http", url)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"diagnose: error: {message}"


# ------------------------------------------------------------------------------------ slowloris


def _probe_in_thread(spec: dict[str, Any], deadline: float, wait: float) -> tuple[list[Any], bool]:
    """Run the http probe in a thread and wait at most `wait` seconds: (its facts, whether it returned)."""
    facts: list[Any] = []

    def work() -> None:
        result, _run = run_probe("http", ProbeContext(deadline=time.monotonic() + deadline), spec)
        facts.extend(result.facts)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(wait)
    return facts, not thread.is_alive()


@pytest.mark.parametrize("stage", ["headers", "body"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_trickling_server_does_not_outlast_the_deadline(issued: Any, host: str, scheme: str, stage: str) -> None:
    """Issue 13 item 4: every read got a byte in time, so per-read timeouts never fired and the request
    went on for ever. The request timeout (and the probe's deadline) bound the whole answer. The bound
    asserted is a correctness bound (3x the budget detects the hang), not a performance figure."""
    with TricklingServer(issued if scheme == "https" else None, stage=stage, interval=0.1, host=host) as slow:
        url = f"{scheme}://{slow.address}/owa/"
        facts, returned = _probe_in_thread({"urls": [url], "timeout": 1.0}, deadline=30, wait=3 * 1.0)
        assert returned, "the http probe was still reading from a trickling server"
        facts_deadline, returned = _probe_in_thread({"urls": [url], "timeout": 30}, deadline=1.0, wait=3 * 1.0)
        assert returned, "the http probe outlived its deadline"
        sent = slow.bytes_sent
    assert sent > 0  # the server did trickle: this was not a silent peer
    for fact in facts + facts_deadline:
        assert (fact.attrs["outcome"], fact.attrs["healthy"]) == ("timeout", False)
        assert fact.attrs["reason"] == "no complete answer in time"


def test_cli_http_deadline_against_a_trickling_server() -> None:
    """`probe http --timeout 3 --deadline 10` ran over 200 s against a trickling server (issue 13)."""
    with TricklingServer(interval=0.2) as slow:
        proc = run_cli(
            "probe",
            "http",
            f"http://{slow.address}/owa/",
            f"http://{slow.address}/ews/",
            "--timeout",
            "3",
            "--deadline",
            "2",
            "--format",
            "json",
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    assert [f["attrs"]["outcome"] for f in json.loads(proc.stdout)["facts"]] == ["timeout", "timeout"]


# ------------------------------------------------------------------ the endpoint table is data


def _table_with_a_new_version(folder: Any) -> None:
    """A copy of the shipped table with Exchange "2028": a new protocol (MAPI over HTTP) and the OWA logon
    form posted to auth.owa as from 2013. Text edits of the YAML only."""
    from diagnose.exchange import CATALOGUE_FILE, catalogue_path

    text = catalogue_path(()).read_text(encoding="utf-8")
    text = text.replace("protocols:\n", "protocols:\n  mapi: {vdir: mapi, words: [mapi]}\n", 1)
    text = text.replace(
        '  "2019": {healthcheck: true}\n', '  "2019": {healthcheck: true}\n  "2028": {healthcheck: true}\n'
    )
    text = text.replace('versions: ["2013", "2016", "2019", SE]', 'versions: ["2013", "2016", "2019", SE, "2028"]')
    text = text.replace(
        "endpoints:\n",
        "endpoints:\n  - {protocol: mapi, path: /mapi/emsmdb/, statuses: [401],"
        ' expected: 401 asking for authentication, versions: ["2028"]}\n',
        1,
    )
    (folder / CATALOGUE_FILE).write_text(text, encoding="utf-8")


def test_a_new_exchange_version_in_a_copy_of_the_table_needs_no_python_change(
    healthy: TlsServer, tmp_path: Any
) -> None:
    checks = tmp_path / "checks"
    checks.mkdir()
    _table_with_a_new_version(checks)
    profile = tmp_path / "site.yaml"
    profile.write_text(
        f"internal_name: {INTERNAL_NAME}\ninternal_addresses: ['{healthy.host}']\n"
        "published: [owa, mapi]\nexchange_version: '2028'\n",
        encoding="utf-8",
    )
    before = len(healthy.requests)
    proc = run_cli(
        "probe",
        "http",
        "--profile",
        str(profile),
        "--port",
        str(healthy.port),
        "--format",
        "json",
        env={"DIAGNOSE_CHECKS": str(checks)},
    )
    assert proc.returncode == 0, proc.stderr
    facts = {f"{f['attrs']['method']} {f['attrs']['path']}": f["attrs"] for f in json.loads(proc.stdout)["facts"]}
    assert sorted(facts) == [
        "GET /mapi/emsmdb/",
        "GET /mapi/healthcheck.htm",
        "GET /owa/",
        "GET /owa/auth/logon.aspx",
        "GET /owa/healthcheck.htm",
        "POST /owa/auth.owa",
    ]
    assert facts["GET /mapi/emsmdb/"]["protocol"] == "mapi"
    assert facts["GET /mapi/emsmdb/"]["expected"] == "401 asking for authentication"
    asked = [(method, path) for method, path, _headers in healthy.requests[before:]]
    assert ("GET", "/mapi/emsmdb/") in asked and ("GET", "/mapi/healthcheck.htm") in asked
    # the shipped table knows neither the version nor the protocol: the profile is refused in one line
    proc = run_cli("probe", "http", "--profile", str(profile), "--port", str(healthy.port))
    assert proc.returncode == 3 and "unknown protocol 'mapi'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("statuses: [401]\n", "statuses: [401, 1000]\n"), "1000 is not an HTTP status code"),
        (("    path: /owa/\n", "    path: owa/\n"), "must start with /"),
        (
            ("    redirect_to: /owa/auth/logon.aspx\n", "    redirect_too: /owa/auth/logon.aspx\n"),
            "unknown key 'redirect_too'",
        ),
        (('versions: ["2007", "2010"]', 'versions: ["2007", "2011"]'), "unknown version '2011'"),
    ],
)
def test_a_bad_endpoint_table_is_one_line_with_file_and_line(
    tmp_path: Any, edit: tuple[str, str], message: str
) -> None:
    from diagnose.exchange import CATALOGUE_FILE, catalogue_path

    text = catalogue_path(()).read_text(encoding="utf-8")
    assert edit[0] in text
    bad_line = text[: text.index(edit[0])].count("\n") + 1
    (tmp_path / CATALOGUE_FILE).write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    proc = run_cli(
        "probe",
        "http",
        "https://cas01.contoso.local/owa/",
        "--connect",
        closed_port_address(),
        env={"DIAGNOSE_CHECKS": str(tmp_path)},
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{tmp_path / CATALOGUE_FILE}:{bad_line}: " in proc.stderr and message in proc.stderr


def closed_port_address() -> str:
    return f"{LOOPBACK}:{closed_port()}"
