"""`diagnose run --checks DIR` (and `collect --checks DIR`) replace the tables under checks/
(exchange-endpoints.yaml, thresholds.yaml) as DIAGNOSE_CHECKS does: the log probe judges by the copy's
thresholds, the profile may name the copy's Exchange version, and the http probe requests the copy's
endpoints from a TLS server on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diagnose.thresholds import THRESHOLDS_FILE, thresholds_path
from tests.certs import CertFactory
from tests.conftest import run_cli
from tests.probes.test_http import _table_with_a_new_version
from tests.servers import TlsServer, owa_app
from tests.test_run_network import healthy_cas_checks
from tests.test_thresholds import _status64_log

CAS = "127.0.0.10"


def _checks_with_tables(tmp_path: Path) -> Path:
    """A checks directory with a copy of the endpoint table that knows Exchange "2028" (and MAPI), and a
    copy of the thresholds with a burst floor of 20 Status 64 entries a minute instead of 10."""
    folder = tmp_path / "tables"
    folder.mkdir()
    _table_with_a_new_version(folder)
    text = thresholds_path(()).read_text(encoding="utf-8")
    floor = "  burst_floor:\n    value: 10\n"
    assert floor in text
    (folder / THRESHOLDS_FILE).write_text(text.replace(floor, "  burst_floor:\n    value: 20\n"), encoding="utf-8")
    return folder


def _profile(tmp_path: Path, version: str) -> Path:
    profile = tmp_path / "site.yaml"
    profile.write_text(
        f"internal_name: cas01.contoso.local\ninternal_addresses: ['{CAS}']\n"
        f"tmg_addresses: [127.0.0.2]\npublished: [owa, mapi]\nexchange_version: '{version}'\n",
        encoding="utf-8",
    )
    return profile


def _all_scope(d: dict[str, Any]) -> dict[str, Any]:
    return next(f["attrs"] for f in d["facts"] if f["kind"] == "log.status_summary" and f["attrs"]["scope"] == "all")


def test_run_checks_replaces_the_thresholds_and_the_endpoint_table(tmp_path: Path) -> None:
    log = _status64_log(tmp_path)
    tables = _checks_with_tables(tmp_path)
    args = ["run", "--offline", "--no-input", "--log", str(log), "--tmg", "127.0.0.2", "--format", "json"]
    shipped = run_cli(*args)
    assert shipped.returncode == 0, shipped.stderr
    assert _all_scope(json.loads(shipped.stdout))["bursts"] == 1
    # the copy's burst floor (20) is above the peak (12): no burst
    copied = run_cli(*args, "--checks", str(tables))
    assert copied.returncode == 0, copied.stderr
    assert _all_scope(json.loads(copied.stdout))["bursts"] == 0
    # a profile naming the copy's version and protocol is taken with --checks, refused in one line without
    profile = _profile(tmp_path, "2028")
    refused = run_cli(*args, "--profile", str(profile))
    assert refused.returncode == 3 and refused.stderr.count("\n") == 1, refused.stderr
    assert "unknown protocol 'mapi'" in refused.stderr and "Traceback" not in refused.stderr
    taken = run_cli(*args, "--profile", str(profile), "--checks", str(tables))
    assert taken.returncode == 0, taken.stderr
    site = next(f["attrs"] for f in json.loads(taken.stdout)["facts"] if f["kind"] == "site.profile")
    assert (site["exchange_version"], site["published"]) == ("2028", ["owa", "mapi"])


def test_collect_checks_requests_the_endpoints_of_the_copied_table(tmp_path: Path) -> None:
    """The copy's MAPI endpoint is requested from the CAS on loopback: the http probe (a worker of the
    collect) reads the table given by --checks."""
    tables = _checks_with_tables(tmp_path)
    factory = CertFactory(tmp_path / "certs")
    issued = factory.issue("cas01.contoso.local", san=["cas01.contoso.local"])
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{CAS} cas01.contoso.local\n", encoding="utf-8")
    bundle = tmp_path / "bundle.json"
    with TlsServer(issued, app=owa_app(), host=CAS) as cas:
        aimed = healthy_cas_checks(tmp_path, cas.port, factory.root_pem)
        done = run_cli(
            "collect",
            "--profile",
            str(_profile(tmp_path, "2028")),
            "--hosts-file",
            str(hosts),
            "--checks",
            str(aimed),
            "--checks",
            str(tables),
            "--dns-server",
            "127.0.0.1:9",
            "--no-input",
            "--timeout",
            "20",
            "-o",
            str(bundle),
        )
        asked = [(method, path) for method, path, _headers in cas.requests]
    assert done.returncode == 0, done.stderr
    assert ("GET", "/mapi/emsmdb/") in asked and ("GET", "/mapi/healthcheck.htm") in asked
    facts = json.loads(bundle.read_text(encoding="utf-8"))["facts"]
    paths = {f["attrs"]["path"] for f in facts if f["kind"] == "http.endpoint"}
    assert {"/mapi/emsmdb/", "/mapi/healthcheck.htm"} <= paths
