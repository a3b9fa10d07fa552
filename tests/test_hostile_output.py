"""Hostile names and bytes in the evidence reach no terminal, report or file raw.

Injection: a certificate generated here whose CN carries a terminal title change, a screen clear, a
C1 CSI, a bidi override and HTML/Markdown markup, presented by an HTTPS server on loopback; a services
export whose display names and host carry the same; TMG log fields (rule, computer, user) and a folder
name carrying them. Every format of `run`, `probe` and the progress lines on stderr must show them
escaped: no raw control character, no live markup, while JSON keeps every valid string exactly.

Encoding: file and folder names that are not UTF-8, and a lone surrogate in an evidence file, give
valid UTF-8 output and a bundle that names the files printably (escaped bytes).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from diagnose.safetext import markdown, neutralise, to_json
from tests.certs import CertFactory
from tests.conftest import CORPUS, REPO
from tests.hostile_site import (
    HOSTILE,
    HOSTILE_CN,
    HOSTILE_FIELD,
    LOOPBACK_CAS,
    loopback_checks,
    services_csv,
    write_site,
)
from tests.servers import TlsServer, owa_app

FORMATS = ("text", "json", "markdown", "html")
# what may never reach an output raw: C0 but tab/newline/CR, DEL, C1, bidi controls, separators
RAW = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
HOSTILE_FOLDER = "site\x1b]0;owned\x07<script>"
NOT_UTF8_FOLDER = b"caf\xe9"


def run_bytes(*args: str | bytes, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """The CLI as a user runs it, its output kept as bytes (to check the encoding itself)."""
    full = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "diagnose", *args], capture_output=True, cwd=REPO, env=full, timeout=120
    )


def clean(data: bytes, where: str) -> str:
    """`data` is valid UTF-8 and holds no raw control, bidi or separator character."""
    text = data.decode("utf-8")  # raises on invalid UTF-8
    bad = sorted({f"U+{ord(c):04X}" for c in RAW.findall(text)})
    assert not bad, f"{where}: raw {bad}"
    return text


# ------------------------------------------------------------------------------- the helpers themselves


def test_neutralise_shows_every_control_and_bidi_character_escaped() -> None:
    assert neutralise("a\x1b]0;t\x07b\x9b2J\u202ec\x7f") == "a\\x1b]0;t\\x07b\\x9b2J\\u202ec\\x7f"
    assert neutralise("x\ny\tz") == "x\\ny\\tz" and neutralise("x\ny", keep="\n") == "x\ny"
    assert neutralise("ISALOG_\udcff.w3c") == "ISALOG_\\xff.w3c"  # a byte that was not UTF-8
    assert neutralise("lone \ud800") == "lone \\ud800"
    assert neutralise("plain café ✓") == "plain café ✓"
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x202E, 0x2066, 0x2028, 0xD800, 0xDCFF]:
        assert not RAW.search(neutralise(chr(code))) and neutralise(chr(code)).encode("utf-8")


def test_markdown_escapes_tags_pipes_links_and_backticks() -> None:
    out = markdown(HOSTILE)
    assert "<" not in out and ">" not in out and "&lt;script&gt;" in out
    assert re.search(r"(?<!\\)[|`\[\]()]", out) is None  # every pipe, backtick, bracket and paren escaped
    assert not RAW.search(out)


def test_to_json_is_lossless_for_valid_text_and_valid_utf8_always() -> None:
    value = {"cn": HOSTILE, "sep": "a\u2028b", "name": "ISALOG_\udcff.w3c", "lone": "\ud800"}
    text = to_json(value)
    assert not RAW.search(text)
    text.encode("utf-8")
    back = json.loads(text)
    assert back["cn"] == HOSTILE and back["sep"] == "a\u2028b"
    assert back["name"] == "ISALOG_\\xff.w3c" and back["lone"] == "\\ud800"


# ------------------------------------------------------------------------------- injection, end to end


@pytest.fixture
def hostile_cas(tmp_path: Path):
    factory = CertFactory(tmp_path / "certs")
    issued = factory.issue(HOSTILE_CN, san=["casqz9.zqacme.local"])
    with TlsServer(issued, app=owa_app(), host=LOOPBACK_CAS) as server:
        yield server, factory.root_pem


def test_probe_tls_shows_a_hostile_certificate_name_escaped(hostile_cas: tuple[TlsServer, Path]) -> None:
    server, root = hostile_cas
    text = run_bytes("probe", "tls", server.address, "--internal-name", "casqz9.zqacme.local", "--ca-file", str(root))
    assert text.returncode == 0, text.stderr
    shown = clean(text.stdout, "probe tls text")
    assert "subject_cn: \\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202e<script>" in shown
    done = run_bytes(
        "probe",
        "tls",
        server.address,
        "--internal-name",
        "casqz9.zqacme.local",
        "--ca-file",
        str(root),
        "--format",
        "json",
    )
    (cert,) = json.loads(clean(done.stdout, "probe tls json"))["facts"]
    assert cert["attrs"]["subject_cn"] == HOSTILE_CN  # JSON keeps the name exactly


def test_run_neutralises_hostile_inputs_in_every_format(tmp_path: Path, hostile_cas: tuple[TlsServer, Path]) -> None:
    if not (CORPUS / "pcaps").is_dir():
        pytest.skip("../shared/corpus is not present")
    server, root = hostile_cas
    site = write_site(
        tmp_path / "in", rule="Publish " + HOSTILE_FIELD, display=HOSTILE, folders=("case", HOSTILE_FOLDER)
    )
    site.services.write_text(services_csv(HOSTILE, "CAS\x1b[2J01"), encoding="utf-8", newline="")
    checks = loopback_checks(tmp_path, server.port, root)
    args = [
        "--profile",
        str(site.profile),
        "--log",
        str(site.log),
        "--services-export",
        str(site.services),
        "--checks",
        str(checks),
        "--no-input",
        "--progress",
        "--timeout",
        "30",
    ]
    for fmt in FORMATS:
        done = run_bytes("run", *args, "--format", fmt, "--why")
        assert done.returncode in (0, 1), done.stderr
        report = clean(done.stdout, f"run --format {fmt}")
        progress = clean(done.stderr, f"run --format {fmt} stderr")
        assert "site\\x1b]0;owned\\x07" in progress  # the progress lines name the folder, escaped
        if fmt == "json":
            diagnosis = json.loads(report)
            (cert,) = [f for f in diagnosis["facts"] if f["kind"] == "tls.certificate"]
            assert cert["attrs"]["subject_cn"] == HOSTILE_CN
            assert any(f["attrs"].get("rule") == "Publish " + HOSTILE_FIELD for f in diagnosis["facts"])
            assert any(HOSTILE_FOLDER in (f["provenance"].get("source") or "") for f in diagnosis["facts"])
            continue
        # the services check names the hostile folder in its reason, in every report's evidence section
        if fmt == "text":
            assert "site\\x1b]0;owned\\x07<script>" in report
        elif fmt == "markdown":
            # the backslash of each escape is itself escaped: rendered, it reads site\x1b]0;owned\x07<script>
            assert "site\\\\x1b\\]0;owned\\\\x07&lt;script&gt;" in report and "<script>" not in report
        else:
            assert "site\\x1b]0;owned\\x07&lt;script&gt;" in report and "<script>" not in report


def test_probe_services_and_logs_show_hostile_fields_escaped(tmp_path: Path) -> None:
    export = tmp_path / "services.csv"
    export.write_text(services_csv(HOSTILE, "CAS\x1b[2J01"), encoding="utf-8", newline="")
    done = run_bytes("probe", "services", "--services-export", str(export), "--all")
    assert done.returncode == 0, done.stderr
    shown = clean(done.stdout, "probe services")
    assert "\\x1b]0;owned\\x07" in shown and "CAS\\x1b[2J01" in shown
    as_json = run_bytes("probe", "services", "--services-export", str(export), "--all", "--format", "json")
    facts = json.loads(clean(as_json.stdout, "probe services json"))["facts"]
    assert any(f["attrs"].get("display_name") == HOSTILE for f in facts)  # kept exactly

    site = write_site(tmp_path / "logs", rule="Publish " + HOSTILE_FIELD, folders=(HOSTILE_FOLDER,))
    for fmt in ("text", "json"):
        done = run_bytes("probe", "logs", str(site.log), "--format", fmt)
        assert done.returncode == 0, done.stderr
        out = clean(done.stdout, f"probe logs {fmt}")
        clean(done.stderr, f"probe logs {fmt} stderr")
        if fmt == "json":
            assert any(f["attrs"].get("rule") == "Publish " + HOSTILE_FIELD for f in json.loads(out)["facts"])
        else:
            assert "Publish \\x9b31m\\u202egpj.exe<script>" in out


# ------------------------------------------------------------------------------- encoding


def test_file_names_that_are_not_utf8_give_a_valid_bundle_and_json(tmp_path: Path) -> None:
    folder = os.path.join(os.fsencode(tmp_path), NOT_UTF8_FOLDER)
    os.mkdir(folder)
    log = os.path.join(folder, b"ISALOG_\xff_FWS.w3c")
    with open(log, "wb") as fh:
        fh.write((REPO / "examples" / "seed" / "ISALOG_20110504_FWS_000.w3c").read_bytes())
    bundle = tmp_path / "bundle.json"
    done = run_bytes("collect", "--log", folder, "--offline", "--progress", "-o", str(bundle))
    assert done.returncode == 0, done.stderr
    clean(done.stderr, "collect stderr")
    saved = json.loads(clean(bundle.read_bytes(), "bundle"))
    sources = {f["provenance"].get("source") for f in saved["facts"]}
    assert str(tmp_path) + "/caf\\xe9/ISALOG_\\xff_FWS.w3c" in sources  # named printably, byte by byte
    for fmt in FORMATS:
        clean(run_bytes("analyze", str(bundle), "--format", fmt).stdout, f"analyze {fmt}")
    for fmt in FORMATS:  # straight into the rule engine, too
        done = run_bytes("run", "--log", folder, "--offline", "--no-input", "--format", fmt)
        assert done.returncode in (0, 1), done.stderr
        clean(done.stdout, f"run {fmt}")
    probe = run_bytes("probe", "logs", folder, "--format", "json")
    assert probe.returncode == 0, probe.stderr
    assert json.loads(clean(probe.stdout, "probe logs json"))["facts"]
    clean(run_bytes("probe", "logs", folder).stdout, "probe logs text")


def test_a_lone_surrogate_in_an_evidence_file_is_kept_printable(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence.json"
    evidence.write_text(
        '{"facts": [{"kind": "dns.resolution", "subject": "mail\\ud800.contoso.com",'
        ' "attrs": {"name": "mail\\ud800.contoso.com", "source": "dns"}}]}',
        encoding="ascii",
    )
    bundle = tmp_path / "bundle.json"
    done = run_bytes("collect", "--evidence", str(evidence), "--offline", "-o", str(bundle))
    assert done.returncode == 0, done.stderr
    saved = json.loads(clean(bundle.read_bytes(), "bundle"))
    assert [f["subject"] for f in saved["facts"] if f["kind"] == "dns.resolution"] == ["mail\\ud800.contoso.com"]
    for fmt in FORMATS:
        done = run_bytes("run", "--evidence", str(evidence), "--offline", "--no-input", "--format", fmt)
        assert done.returncode in (0, 1), done.stderr
        clean(done.stdout, f"run {fmt}")


def test_coloured_text_report_carries_only_its_own_colour_codes(tmp_path: Path) -> None:
    """On a terminal the text report is coloured: the colour codes are the report's, the evidence's
    escape sequences (here a CSI written as ESC [ in a folder name) are shown, never sent."""
    from diagnose.cli.common import load_rules
    from diagnose.diagnosis import analyze
    from diagnose.engine import create_engine
    from diagnose.facts import load_bundle
    from diagnose.report import render

    folder = tmp_path / "site\x1b[31m\x1b]0;owned\x07"
    folder.mkdir()
    export = folder / "services.csv"
    export.write_text(services_csv(HOSTILE), encoding="utf-8", newline="")
    bundle = tmp_path / "bundle.json"
    done = run_bytes("collect", "--services-export", str(export), "--offline", "-o", str(bundle))
    assert done.returncode == 0, done.stderr
    rulebook = load_rules()
    diagnosis = analyze(load_bundle(bundle), rulebook, create_engine(rulebook, "reference"))
    coloured = render(diagnosis, "text", color=True)
    sequences = re.findall("\x1b[^a-zA-Z]*[a-zA-Z]?", coloured)
    assert sequences and all(re.fullmatch(r"\x1b\[[0-9;]*m", s) for s in sequences), set(sequences)
    assert "site\\x1b[31m\\x1b]0;owned\\x07" in coloured
    assert render(diagnosis, "text", color=False) == re.sub(r"\x1b\[[0-9;]*m", "", coloured)


def test_an_error_quoting_a_long_line_stays_one_readable_line(tmp_path: Path) -> None:
    """An error that quotes the evidence (here a 60,000-character line no DNS tool printed) is cut to
    a readable length and says how much was left out."""
    recording = tmp_path / "not-dns.txt"
    recording.write_text("\n" + "x" * 60_000 + "\n", encoding="utf-8")
    done = run_bytes("probe", "dns", "mail.contoso.com", "--offline", "--no-hosts", "--dns-recorded", str(recording))
    assert done.returncode == 2
    lines = done.stderr.decode("utf-8").splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"diagnose: error: {recording}:2: not dig, nslookup")
    assert re.search(r"\.\.\. \(\d+ more characters\)$", lines[0])
    assert len(lines[0]) < 2100
