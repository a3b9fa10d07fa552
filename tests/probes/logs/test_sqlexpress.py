"""A TMG log folder holding SQL Server Express databases (TMG's default log storage): not read, and
the user is told how to get text (export to CSV, or switch to text logs) instead of 'no log files'."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_cli
from tests.probes.logs.test_scan import overall

# the databases' content is never read: a page-sized blank stands in
MDF_PAGE = bytes(8192)
CSV = (
    "servername,logTime,protocol,SourceIP,SourcePort,DestinationIP,DestinationPort,OriginalClientIP,"
    "SourceNetwork,DestinationNetwork,Action,resultcode,rule,ApplicationProtocol,GmtLogTime\n"
    "TMG01,2024-03-04 11:00:00.000,TCP,0A000001-FFFF-0000-0000-000000000000,50000,"
    "0A000014-FFFF-0000-0000-000000000000,443,C6336407-FFFF-0000-0000-000000000000,"
    'Local Host,Internal,10,-2147024832,"Publish OWA",HTTPS Server,2024-03-04 10:00:00.000\n'
)


def _databases(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for day in ("20240304", "20240305"):
        (folder / f"ISALOG_{day}_FWS_000.mdf").write_bytes(MDF_PAGE * 4)
        (folder / f"ISALOG_{day}_FWS_000_log.ldf").write_bytes(bytes(4096))


def test_a_folder_of_sql_express_databases_gets_the_hint(tmp_path: Path) -> None:
    logs = tmp_path / "Logs"
    _databases(logs)
    result = run_cli("probe", "logs", str(logs), "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    reason = json.dumps(doc)
    assert "2 SQL Express database file(s) (.mdf) not read" in reason
    assert "export" in reason and "text files (W3C)" in reason
    assert "Configure Firewall Logging" in result.stderr  # the note on stderr too


def test_a_named_database_file_is_not_read_as_a_log(tmp_path: Path) -> None:
    _databases(tmp_path)
    result = run_cli("probe", "logs", str(tmp_path / "ISALOG_20240304_FWS_000.mdf"))
    assert result.returncode == 0, result.stderr
    assert "a SQL Express database file, not read" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_exports_beside_the_databases_are_read_and_the_hint_still_given(tmp_path: Path) -> None:
    _databases(tmp_path)
    (tmp_path / "FirewallLog.csv").write_text(CSV, encoding="utf-8")
    result = run_cli("probe", "logs", str(tmp_path), "--format", "json")
    assert result.returncode == 0, result.stderr
    attrs = overall(json.loads(result.stdout))
    assert attrs["records"] == 1 and attrs["status64_count"] == 1
    assert "SQL Express database file(s)" in result.stderr
