"""A whole case folder in one command (`diagnose analyze DIR|ZIP`, `run --evidence-dir`): every artefact
recognised by its content, the rest skipped with a reason, the same diagnosis as the files given one by one."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import zipfile
from pathlib import Path

import pytest

from diagnose.casefolder import MAX_RATIO, survey
from tests.certs import CertFactory
from tests.conftest import run_cli
from tests.probes.capture.synth import conversations, records_for, write_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DATA = ROOT / "tests" / "data"
CORPUS = ROOT.parent / "shared" / "corpus"


def _office_file(path: Path) -> Path:
    """A .docx as Word writes it: a zip of XML parts."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        z.writestr("word/document.xml", '<?xml version="1.0"?><w:document/>')
    return path


def _png(path: Path) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return path


def _seed_case(root: Path) -> Path:
    """The seed example as a support engineer gets it: the TMG log renamed in a nested folder, the
    NetMon text trace inside a zip with a Word file and a screenshot beside it."""
    seed = EXAMPLES / "seed"
    logs = root / "case 4711" / "TMG01" / "Logs (exported)"
    logs.mkdir(parents=True)
    shutil.copy(seed / "ISALOG_20110504_FWS_000.w3c", logs / "firewall log copy.txt")
    staging = root / "staging"
    staging.mkdir()
    shutil.copy(seed / "netmon-trace.txt", staging / "trace_from_tmg")
    with zipfile.ZipFile(root / "case 4711" / "from customer.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(staging / "trace_from_tmg", "traces/trace_from_tmg")
        z.writestr("readme.txt", "Hi, the trace is attached. Regards")
    shutil.rmtree(staging)
    _office_file(root / "case 4711" / "ticket.docx")
    _png(root / "case 4711" / "screenshot.png")
    return root / "case 4711"


def _json(proc) -> dict:  # type: ignore[no-untyped-def]
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def test_case_folder_gives_the_verdict_of_the_files_given_one_by_one(tmp_path: Path) -> None:
    case = _seed_case(tmp_path)
    seed = EXAMPLES / "seed"
    common = ["--profile", str(seed / "profile.yaml"), "--no-input", "--format", "json"]
    folder = run_cli("analyze", str(case), *common)
    one_by_one = run_cli(
        "run",
        "--offline",
        "--log",
        str(seed / "ISALOG_20110504_FWS_000.w3c"),
        "--capture",
        str(seed / "netmon-trace.txt"),
        *common,
    )
    got, want = _json(folder), _json(one_by_one)
    assert want["decided_by"] == "dirty-close-by-design"
    assert (got["verdict"], got["decided_by"]) == (want["verdict"], want["decided_by"])
    assert [c["id"] for c in got["causes"]] == [c["id"] for c in want["causes"]]

    files = got["case_folder"]
    taken = {(t["kind"], t["file"]) for t in files["taken"]}
    zipped = f"{case / 'from customer.zip'}!traces/trace_from_tmg"
    assert taken == {
        ("tmg-log", str(case / "TMG01" / "Logs (exported)" / "firewall log copy.txt")),
        ("capture", zipped),
    }
    skipped = {s["file"]: s["reason"] for s in files["skipped"]}
    assert "Office" in skipped[str(case / "ticket.docx")]
    assert "PNG image" in skipped[str(case / "screenshot.png")]
    assert "no reader recognises" in skipped[f"{case / 'from customer.zip'}!readme.txt"]
    # each file said on stderr, one line each
    assert f"took capture {zipped} (as --capture)" in folder.stderr
    assert f"skipped {case / 'screenshot.png'}: " in folder.stderr
    # facts from the zip member cite the zip, never the temporary folder it was unpacked into
    assert "diagnose-case-" not in folder.stdout
    # offline: nothing was sent
    by_check = {p["check"]: p for p in got["probes"]}
    for check in ("tls-internal-certificate", "http-published-endpoints", "tcp-internal-443"):
        assert by_check[check]["status"] == "unavailable" and "offline" in by_check[check]["reason"]


def test_a_zip_is_a_case_too_and_run_evidence_dir_reads_it_alike(tmp_path: Path) -> None:
    case = _seed_case(tmp_path / "unpacked")
    archive = tmp_path / "case.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(case.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(case).as_posix())
    common = ["--profile", str(EXAMPLES / "seed" / "profile.yaml"), "--no-input", "--format", "json"]
    from_zip = _json(run_cli("analyze", str(archive), *common))
    from_run = _json(run_cli("run", "--offline", "--evidence-dir", str(archive), *common))
    assert from_zip["decided_by"] == from_run["decided_by"] == "dirty-close-by-design"
    kinds = sorted(t["kind"] for t in from_zip["case_folder"]["taken"])
    assert kinds == ["capture", "tmg-log"]
    # the capture was in a zip inside the zip: opened, one level deep
    assert f"{archive}!from customer.zip!traces/trace_from_tmg" in {t["file"] for t in from_zip["case_folder"]["taken"]}


def test_services_exports_of_two_cas_are_merged_each_fact_keeping_its_source(tmp_path: Path) -> None:
    fba = EXAMPLES / "fba-stopped"
    (tmp_path / "CAS01").mkdir()
    (tmp_path / "CAS02").mkdir()
    shutil.copy(fba / "cas01-services.csv", tmp_path / "CAS01" / "services")
    shutil.copy(DATA / "services" / "sc-query-cas2010.txt", tmp_path / "CAS02" / "output.log")
    shutil.copy(fba / "evidence.json", tmp_path / "recorded")
    common = [
        "--profile",
        str(fba / "profile.yaml"),
        "--answers",
        str(tmp_path / "answers.yaml"),
        "--no-input",
        "--format",
        "json",
    ]
    (tmp_path / "answers.yaml").write_text('users-report-failures: "yes"\n')
    got = _json(run_cli("analyze", str(tmp_path), *common))
    want = _json(
        run_cli(
            "run",
            "--offline",
            "--services-export",
            str(fba / "cas01-services.csv"),
            "--services-export",
            str(DATA / "services" / "sc-query-cas2010.txt"),
            "--evidence",
            str(fba / "evidence.json"),
            *common,
        )
    )
    assert want["decided_by"] == "exchange-fba-service-stopped"
    assert (got["verdict"], got["decided_by"]) == (want["verdict"], want["decided_by"])
    sources = {f["provenance"].get("source") for f in got["facts"] if f["kind"] == "service.state"}
    assert {str(tmp_path / "CAS01" / "services"), str(tmp_path / "CAS02" / "output.log")} <= sources
    skipped = {s["file"] for s in got["case_folder"]["skipped"]}
    assert str(tmp_path / "answers.yaml") in skipped


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        (DATA / "services" / "get-service-ps51.csv", "services-export"),
        (DATA / "services" / "get-service-ps7-enums.json", "services-export"),
        (DATA / "services" / "sc-queryex-de.txt", "services-export"),
        (DATA / "services" / "systemctl-show.txt", "services-export"),
        (DATA / "services" / "win32-service-wmi.csv", "services-export"),
        (DATA / "host" / "netstat-ano-ps-utf16.txt", "host-export"),
        (DATA / "host" / "netstat-ano-de-cp850.txt", "host-export"),
        (DATA / "host" / "netsh-dynamicport-tcp-en.txt", "host-export"),
        (DATA / "host" / "events-system-eventviewer.csv", "host-export"),
        (DATA / "host" / "events-system-eventviewer.xml", "host-export"),
        (DATA / "host" / "events-system-wevtutil.txt", "host-export"),
        (DATA / "dns" / "windows-nslookup-cmd.txt", "dns-recorded"),
        (DATA / "dns" / "resolve-dnsname-transcript.txt", "dns-recorded"),
        (EXAMPLES / "dns-mismatch" / "dig.txt", "dns-recorded"),
        (EXAMPLES / "dns-mismatch" / "hosts", "hosts-file"),
        (EXAMPLES / "dns-mismatch" / "evidence.json", "bundle"),
        (EXAMPLES / "seed" / "ISALOG_20110504_FWS_000.w3c", "tmg-log"),
        (EXAMPLES / "seed" / "netmon-trace.txt", "capture"),
        (CORPUS / "iis-logs" / "u_ex160110.log", "proxy-log"),
        (CORPUS / "pcaps" / "cs_tcp_teardown.pcapng", "capture"),
    ],
)
def test_each_artefact_is_recognised_by_content_under_any_name(tmp_path: Path, source: Path, kind: str) -> None:
    if not source.is_file():
        pytest.skip(f"{source} is not present")
    shutil.copy(source, tmp_path / "attachment (2)")
    with survey([str(tmp_path)]) as case:
        assert [(t.kind, Path(t.path).name) for t in case.taken] == [(kind, "attachment (2)")], case.skipped


def test_captures_certificates_and_gzip_by_content(tmp_path: Path) -> None:
    write_file(tmp_path / "a", "pcap", records_for(conversations(4)))
    write_file(tmp_path / "b", "pcapng", records_for(conversations(4)))
    write_file(tmp_path / "c", "netmon2.2", records_for(conversations(4)))
    issued = CertFactory(tmp_path / "pki").issue("cas01.contoso.local")
    der = ssl.PEM_cert_to_DER_cert(issued.cert.read_text())
    (tmp_path / "cert-der").write_bytes(der)
    import gzip

    with gzip.open(tmp_path / "log.gz", "wb") as gz:
        gz.write((EXAMPLES / "seed" / "ISALOG_20110504_FWS_000.w3c").read_bytes())
    with gzip.open(tmp_path / "dig.gz", "wb") as gz:
        gz.write((EXAMPLES / "dns-mismatch" / "dig.txt").read_bytes())
    with survey([str(tmp_path)]) as case:
        taken = {Path(t.path).name: t.kind for t in case.taken}
        skipped = {Path(s.shown).name: s.reason for s in case.skipped}
    assert taken == {
        "a": "capture",
        "b": "capture",
        "c": "capture",
        "cert-der": "certificate",
        "log.gz": "tmg-log",
        "root.pem": "certificate",
        "server1.crt": "certificate",
        "server1.chain.pem": "certificate",
    }
    assert "only those readers take .gz" in skipped["dig.gz"]
    assert "no reader recognises" in skipped["server1.key"]


def test_zip_bounds_bombs_nesting_and_member_paths(tmp_path: Path) -> None:
    inner2 = tmp_path / "level2.zip"
    with zipfile.ZipFile(inner2, "w") as z:
        z.write(EXAMPLES / "seed" / "netmon-trace.txt", "deep-trace")
    inner1 = tmp_path / "level1.zip"
    with zipfile.ZipFile(inner1, "w") as z:
        z.write(inner2, "level2.zip")
    outer = tmp_path / "case" / "case.zip"
    outer.parent.mkdir()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.bin", bytes(4 << 20))  # 4 MiB of zeros: far more than 200:1
        z.writestr("../../escaped-trace", (EXAMPLES / "seed" / "netmon-trace.txt").read_text())
        z.write(inner1, "nested/level1.zip")
    with survey([str(outer.parent)]) as case:
        workdir = case.workdir
        skipped = {s.shown.rsplit("!", 1)[-1]: s.reason for s in case.skipped}
        taken = [(t.kind, t.shown, t.path) for t in case.taken]
        assert workdir and Path(workdir).is_dir()
    assert f"{MAX_RATIO}:1" in skipped["bomb.bin"]
    assert "nested more than 1 level" in skipped["level2.zip"]
    assert [(k, s) for k, s, _ in taken] == [("capture", f"{outer}!escaped-trace")]
    assert taken[0][2].startswith(workdir + os.sep)  # `..` never leaves the case's temporary folder
    assert not Path(workdir).exists()
    assert not (tmp_path / "escaped-trace").exists()


def test_bad_case_paths_are_one_error_line(tmp_path: Path) -> None:
    proc = run_cli("analyze", str(tmp_path / "missing"), "--no-input")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "missing" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_redact_hides_the_case_file_names_in_the_report_and_on_stderr(tmp_path: Path) -> None:
    case = _seed_case(tmp_path)
    proc = run_cli(
        "analyze",
        str(case),
        "--profile",
        str(EXAMPLES / "seed" / "profile.yaml"),
        "--no-input",
        "--redact",
        "--format",
        "json",
    )
    got = _json(proc)
    assert got["decided_by"] == "dirty-close-by-design"
    assert len(got["case_folder"]["taken"]) == 2
    for secret in ("4711", "TMG01", "firewall log copy", "trace_from_tmg", "from customer"):
        assert secret not in proc.stdout and secret not in proc.stderr


def test_sniffing_goes_through_the_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file sniffed is opened as a regular file (bounds.open_regular) and read within the bounds: a
    UTF-16 IIS log (IIS can write them) is a proxy log as its reader takes it, and a PEM file larger than
    what is read whole (MAX_READ, bounds.MAX_SMALL_INPUT) is skipped, not read."""
    import codecs

    from diagnose import casefolder

    iis = CORPUS / "iis-logs" / "u_ex160110.log"
    if not iis.is_file():
        pytest.skip(f"{iis} is not present")
    (tmp_path / "u_ex160110-utf16.log").write_bytes(codecs.BOM_UTF16_LE + iis.read_text().encode("utf-16-le"))
    issued = CertFactory(tmp_path / "pki").issue("cas01.contoso.local")
    big = tmp_path / "big-chain.pem"
    big.write_text(issued.cert.read_text() + "# padding\n" * 200)
    monkeypatch.setattr(casefolder, "MAX_READ", big.stat().st_size - 1)
    opened: list[str] = []
    real = casefolder.open_regular

    def watched(path: object) -> object:
        opened.append(str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(casefolder, "open_regular", watched)
    with survey([str(tmp_path)]) as case:
        taken = {Path(t.path).name: t.kind for t in case.taken}
        skipped = {Path(s.shown).name: s.reason for s in case.skipped}
    assert taken["u_ex160110-utf16.log"] == "proxy-log"
    assert "big-chain.pem" in skipped and "big-chain.pem" not in taken
    assert sorted(opened) == sorted(str(p) for p in tmp_path.rglob("*") if p.is_file())


def test_markdown_and_html_reports_list_the_case_folder_like_the_text_report(tmp_path: Path) -> None:
    """What was taken and skipped, and why, in every report format; a hostile file name (a table cell
    bar, markup, a control character) stays inert."""
    from diagnose.report.html import escape
    from diagnose.safetext import markdown as md

    case = _seed_case(tmp_path)
    _png(case / "shot|<b>x<b>\x1b[31m.png")
    common = ["--profile", str(EXAMPLES / "seed" / "profile.yaml"), "--no-input"]
    got = _json(run_cli("analyze", str(case), *common, "--format", "json"))["case_folder"]
    text = run_cli("analyze", str(case), *common, "--format", "text").stdout
    markdown = run_cli("analyze", str(case), *common, "--format", "markdown").stdout
    html = run_cli("analyze", str(case), *common, "--format", "html").stdout
    assert f"## Case folder: {md(str(case))}" in markdown and f"<h2>Case folder: {escape(str(case))}</h2>" in html
    assert len(got["taken"]) == 2 and len(got["skipped"]) == 4
    for word, key, what in (("took", "taken", "kind"), ("skipped", "skipped", "reason")):
        for entry in got[key]:
            assert f"| {word} | {md(entry['file'])} | {md(entry[what])} |" in markdown
            assert f"<td>{word}</td><td>{escape(entry['file'])}</td><td>{escape(entry[what])}</td>" in html
            assert entry[what] in text
    assert "\x1b" not in markdown + html + text
    assert "<b>x<b>" not in html and "shot|" not in markdown
