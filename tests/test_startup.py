"""What each command imports: a probe command loads its own reader and the collect stage, not the rule
loader, the other probes (dnspython, cryptography), the report side or multiprocessing for one small file.
Structural, not timed: the modules are listed by `python -X importtime` (PYTHONPROFILEIMPORTTIME) of the
real command, and the list must hold the command's own reader (so the test cannot pass by reading nothing).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import CORPUS, run_cli

# Never needed by a probe command: the rulebook and engines, the report side, the session, the other
# probes' packages and the libraries they bring (dnspython, cryptography).
NOT_FOR_PROBES = (
    "diagnose.rulebook",
    "diagnose.engine",
    "diagnose.report",
    "diagnose.diagnosis",
    "diagnose.session",
    "diagnose.redact",
    "diagnose.casefolder",
    "diagnose.interview",
    "durable",
    "dns",
    "cryptography",
    "diagnose.probes.dns",
    "diagnose.probes.tls",
    "diagnose.probes.http",
    "diagnose.probes.tcp",
    "diagnose.probes.services",
    "diagnose.probes.host",
    "diagnose.probes.evidence",
)
IMPORT_LINE = re.compile(r"^import time:\s*\d+ \|\s*\d+ \| ( *)(\S+)$")


def imported(*args: str) -> tuple[set[str], str]:
    """The modules `diagnose ARGS` imports (as -X importtime lists them) and its standard output."""
    done = run_cli(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert done.returncode == 0, errors
    modules = {m.group(2) for m in map(IMPORT_LINE.match, done.stderr.splitlines()) if m}
    assert "diagnose.cli" in modules, done.stderr[:500]  # the listing was read
    return modules, done.stdout


def loaded(modules: set[str], *packages: str) -> list[str]:
    """The modules of `modules` that are one of `packages` or inside one."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_version_imports_only_the_command_line() -> None:
    modules, out = imported("--version")
    assert "0." in out
    assert loaded(modules, "yaml", "diagnose.facts", "diagnose.cli.common", "diagnose.collect", "diagnose.probes") == []


def test_probe_proxylogs_loads_its_reader_alone(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        '192.0.2.7 - - [04/Mar/2024:10:00:00 +0000] "GET /owa/ HTTP/1.1" 499 0 "-" "Mozilla/5.0"\n'
        '192.0.2.8 - - [04/Mar/2024:10:00:01 +0000] "POST /ews/exchange.asmx HTTP/1.1" 200 512 "-" "curl"\n'
    )
    modules, out = imported("probe", "proxylogs", str(log))
    assert "proxy.status_summary nginx:all" in out and "records: 2" in out
    assert "diagnose.probes.proxylogs.nginx" in modules and "diagnose.probes.inputs" in modules
    # the TMG log reader (its LogInput/expand now live in diagnose.probes.inputs) and the capture reader
    assert loaded(modules, *NOT_FOR_PROBES, "diagnose.probes.logs", "diagnose.probes.capture", "multiprocessing") == []


def test_probe_logs_loads_its_reader_alone() -> None:
    tmg = CORPUS / "tmg-logs" / "isa2004_firewall_w3c_ISALOG_FWS.w3c"
    if not tmg.is_file():
        pytest.skip("../shared/corpus is not present")
    modules, out = imported("probe", "logs", "--jobs", "1", str(tmg))
    assert "log.status_summary" in out
    assert "diagnose.probes.logs.scanner" in modules
    assert loaded(modules, *NOT_FOR_PROBES, "diagnose.probes.proxylogs", "diagnose.probes.capture") == []


def test_probe_capture_loads_its_reader_alone() -> None:
    capture = CORPUS / "pcaps" / "ppp_three_http_streams.pcap"
    if not capture.is_file():
        pytest.skip("../shared/corpus is not present")
    modules, out = imported("probe", "capture", str(capture))
    assert "connections: 3" in out
    assert "diagnose.probes.capture.tcp" in modules
    assert loaded(modules, *NOT_FOR_PROBES, "diagnose.probes.proxylogs", "diagnose.probes.logs") == []


def test_run_on_proxy_logs_loads_no_probe_it_does_not_run(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text('192.0.2.7 - - [04/Mar/2024:10:00:00 +0000] "GET /owa/ HTTP/1.1" 499 0 "-" "Mozilla/5.0"\n')
    modules, out = imported("run", "--proxy-log", str(log), "--offline", "--no-input", "--format", "json")
    assert '"proxy.status_summary"' in out
    assert "diagnose.probes.proxylogs.nginx" in modules and "diagnose.rulebook.loader" in modules
    assert (
        loaded(
            modules,
            "dns",
            "cryptography",
            "diagnose.probes.dns",
            "diagnose.probes.tls",
            "diagnose.probes.http",
            "diagnose.probes.tcp",
            "diagnose.probes.capture",
            "diagnose.probes.logs",
            "diagnose.casefolder",
            "diagnose.cli.case",
        )
        == []
    )


def test_a_check_that_does_not_run_is_read_by_the_lint_not_by_the_run(tmp_path: Path) -> None:
    """`run` reads the parameters of the checks it runs (so it loads only their probes); a misspelt check of
    a probe the run does not use (a network check in an offline run) is the lint's finding, at its line."""
    folder = tmp_path / "checks"
    folder.mkdir()
    (folder / "mine.yaml").write_text(
        "checks:\n  - id: tcp-mine\n    probe: tcp\n    network: true\n    params:\n"
        '      targets: "{internal_addresses}"\n      colour: blue\n'
    )
    seed = Path(__file__).resolve().parent.parent / "examples" / "seed" / "ISALOG_20110504_FWS_000.w3c"
    done = run_cli("run", "--log", str(seed), "--offline", "--no-input", "--checks", str(folder), "--format", "json")
    assert done.returncode in (0, 1), done.stderr
    assert '"log.status_summary"' in done.stdout and "colour" not in done.stderr
    lint = run_cli("rules", "lint", "--checks", str(folder))
    assert lint.returncode == 3 and f"{folder / 'mine.yaml'}:7:" in lint.stderr and "'colour'" in lint.stderr
