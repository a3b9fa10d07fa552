"""Explanations name what they speak of, end to end from raw files (issue 11, item 4): the source
address of flood-mitigation denials, the stale HOSTS address TMG's timeouts go to, the local clocks
matched without --tz, and the server a stopped service is on."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from diagnose.probes.logs import summarise
from diagnose.probes.logs.scan import Site
from diagnose.probes.logs.summary import MAX_FLOOD_SOURCES, LogSummary, build_facts
from tests.conftest import REPO, run_cli
from tests.probes.capture import synth
from tests.probes.capture.test_match import (
    CAS,
    TMG,
    S,
    fw_row,
    isa_text_row,
    match,
    segments,
    write_text,
    write_w3c,
)
from tests.test_explanations import explanations, run_json

TMG_EXTERNAL = "131.107.0.10"  # TMG's published listener
STALE = "10.1.5.12"  # the old CAS, where TMG's stale HOSTS entry still points
FLOOD = "0xc0040037"  # FWX_E_TCP_RATE_QUOTA_EXCEEDED_DROPPED: max connection rate for one client exceeded


def flood_row(when: float, client: str, port: int) -> str:
    return fw_row(
        when,
        f"{client}:{port}",
        f"{TMG_EXTERNAL}:443",
        status=FLOOD,
        action="Denied Connection",
        srcnet="External",
        dstnet="Local Host",
    )


def flood_log(path: Path, senders: dict[str, int]) -> Path:
    """A TMG W3C firewall log with `senders[address]` flood denials from each address, interleaved,
    among ordinary allowed connections."""
    rows, n = [], 0
    pending = Counter(senders)
    while pending:
        for client in list(pending):
            rows.append(flood_row(S + n, client, 40000 + n % 20000))
            n += 1
            pending[client] -= 1
            if not pending[client]:
                del pending[client]
        rows.append(
            fw_row(
                S + n,
                f"198.51.100.200:{50000 + n % 10000}",
                f"{TMG_EXTERNAL}:443",
                status="0x0",
                action="Initiated Connection",
                srcnet="External",
                dstnet="Local Host",
            )
        )
    return write_w3c(path, rows)


def flood_profile(tmp_path: Path) -> Path:
    profile = tmp_path / "site.yaml"
    profile.write_text(
        f"published_names: [mail.contoso.com]\ninternal_addresses: [10.1.5.11]\n"
        f"tmg_addresses: [{TMG}, {TMG_EXTERNAL}]\npublished: [owa]\n",
        encoding="utf-8",
    )
    return profile


def test_flood_denials_from_one_address_name_it(tmp_path: Path) -> None:
    log = flood_log(tmp_path / "ISALOG_20240504_FWS_000.w3c", {"203.0.113.7": 400})
    d = run_json("--profile", str(flood_profile(tmp_path)), "--log", str(log))
    assert (d["verdict"], d["causes"][0]["id"]) == ("misconfiguration", "flood-mitigation")
    said = explanations(d, "flood-mitigation")
    assert said == {
        "flood-mitigation-one-source": "TMG denied 400 connection(s) by flood mitigation, every one from 203.0.113.7"
    }


def test_flood_denials_from_several_addresses_name_the_top_sources_with_counts(tmp_path: Path) -> None:
    senders = {"203.0.113.7": 300, "198.51.100.9": 40, "192.0.2.33": 12}
    senders.update({f"203.0.113.{100 + n}": 1 for n in range(6)})
    log = flood_log(tmp_path / "ISALOG_20240504_FWS_000.w3c", senders)
    d = run_json("--profile", str(flood_profile(tmp_path)), "--log", str(log))
    assert (d["verdict"], d["causes"][0]["id"]) == ("misconfiguration", "flood-mitigation")
    said = explanations(d, "flood-mitigation")
    assert list(said) == ["flood-mitigation-denials"]
    assert said["flood-mitigation-denials"] == (
        "TMG denied 358 connection(s) by flood mitigation; by source address: 203.0.113.7 (300), "
        "198.51.100.9 (40), 192.0.2.33 (12), 203.0.113.100 (1), 203.0.113.101 (1), 4 from other sources"
    )


@pytest.mark.parametrize("pure", [False, True])
def test_flood_sources_are_the_same_read_whole_split_or_without_the_accelerator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pure: bool
) -> None:
    import diagnose.probes.logs as logs_pkg
    import diagnose.probes.logs.scan as scan_mod

    if pure:
        monkeypatch.setattr(scan_mod, "_fastscan", None)
    elif scan_mod._fastscan is None:
        pytest.skip("the C accelerator is not built")
    senders = {"203.0.113.7": 3000, "198.51.100.9": 700}
    log = flood_log(tmp_path / "fw.w3c", senders)
    whole, _ = summarise([str(log)], Site(tmg_addresses=frozenset({TMG_EXTERNAL})), 1)
    monkeypatch.setattr(logs_pkg, "SPLIT_AT", os.path.getsize(log) // 3)
    parts, _ = summarise([str(log)], Site(tmg_addresses=frozenset({TMG_EXTERNAL})), 2)
    assert whole.flood_sources == parts.flood_sources == Counter(senders)
    facts, _ = build_facts(whole)
    assert facts[0].attrs["flood_sources"] == ("203.0.113.7 (3000)", "198.51.100.9 (700)")
    assert "flood_source" not in facts[0].attrs


def test_flood_sources_stay_bounded_and_keep_the_heaviest_source() -> None:
    """Denials from very many addresses (a spoofed SYN flood) keep at most 2 x MAX_FLOOD_SOURCES counters;
    the address sending most keeps its exact count even when it first appears after thousands of others."""
    summary = LogSummary()
    for n in range(10 * MAX_FLOOD_SOURCES):
        summary.flood_from(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
    for _ in range(50):
        summary.flood_from("203.0.113.7")
    summary.scope("all", "all")["flood_denials"] = 10 * MAX_FLOOD_SOURCES + 50
    assert len(summary.flood_sources) <= 2 * MAX_FLOOD_SOURCES
    assert summary.flood_sources["203.0.113.7"] == 50
    assert sum(summary.flood_sources.values()) + summary.flood_other == 10 * MAX_FLOOD_SOURCES + 50
    attrs = build_facts(summary)[0][0].attrs
    assert attrs["flood_sources"][0] == "203.0.113.7 (50)" and "flood_source" not in attrs
    assert attrs["flood_sources"][-1] == f"{10 * MAX_FLOOD_SOURCES - 4} from other sources"


def stale_hosts_inputs(tmp_path: Path, extra_rows: tuple[str, ...] = ()) -> list[str]:
    """TMG's HOSTS file (CRLF, cp1252, as Notepad on TMG saves it) sends cas01 to 10.1.5.12, the old CAS;
    the CAS is 10.1.5.11; TMG logs timeouts (10060) to 10.1.5.12. The `diagnose run` options."""
    rows = [fw_row(S + 30 * n, f"{TMG}:{40000 + n}", f"{STALE}:443", status="0x8007274c") for n in range(6)]
    log = write_w3c(tmp_path / "ISALOG_20240504_FWS_000.w3c", [*rows, *extra_rows])
    return [*stale_hosts_site(tmp_path, STALE, CAS, TMG), "--log", str(log)]


def stale_hosts_site(tmp_path: Path, stale: str, cas: str, tmg: str, more: str = "") -> list[str]:
    """The site profile (cas01 at `cas`, TMG at `tmg`; `more` profile lines) and TMG's HOSTS file (CRLF,
    cp1252) sending cas01 to `stale`, the old CAS: their `diagnose run` options."""
    hosts = tmp_path / "hosts"
    hosts.write_bytes(f"# TMG HOSTS\r\n{stale}    cas01.contoso.local    cas01   # old CAS\r\n".encode("cp1252"))
    profile = tmp_path / "site.yaml"
    profile.write_text(
        f"published_names: [mail.contoso.com]\ninternal_name: cas01.contoso.local\n"
        f"internal_addresses: [{cas}]\ntmg_addresses: [{tmg}]\npublished: [owa]\n"
        f"exchange_version: '2010'\n{more}",
        encoding="utf-8",
    )
    return ["--profile", str(profile), "--hosts-file", str(hosts)]


def stale_hosts_case(tmp_path: Path, extra_rows: tuple[str, ...] = ()) -> dict[str, Any]:
    d = run_json(*stale_hosts_inputs(tmp_path, extra_rows))
    hosts = tmp_path / "hosts"
    said = explanations(d, "name-resolution-mismatch")["name-resolution-mismatch"]
    assert f"cas01.contoso.local (internal name) resolves through hosts ({hosts}) to {STALE}" in said
    return d


def test_timeouts_to_the_stale_hosts_address_rule_out_the_backend_being_down(tmp_path: Path) -> None:
    d = stale_hosts_case(tmp_path)
    assert (d["verdict"], d["decided_by"]) == ("misconfiguration", "name-resolution-mismatch")
    assert d["causes"][0]["id"] == "name-resolution-mismatch"
    assert "backend-unreachable" not in [c["id"] for c in d["causes"]]
    down = next(c for c in d["ruled_out"] if c["id"] == "backend-unreachable")
    assert down["certainty"] <= 0
    said = explanations(d, "backend-unreachable")["timeouts-to-misresolved-address"]
    assert said.startswith(
        f"the 6 timed-out (10060) connections on the TMG-to-server leg all go to {STALE}, "
        "the address cas01.contoso.local (internal name) resolves to on TMG through hosts"
    )
    address = next(f for f in d["facts"] if f["kind"] == "dns.address")
    assert (address["subject"], address["attrs"]["internal"]) == (f"cas01.contoso.local {STALE}", False)
    assert address["provenance"]["location"] == "line 2"


def test_timeouts_to_the_internal_server_as_well_keep_the_backend_cause(tmp_path: Path) -> None:
    """Timeouts to the real CAS too: the stale entry does not explain them all, so the backend stays a cause."""
    also = tuple(fw_row(S + 7 + 30 * n, f"{TMG}:{41000 + n}", f"{CAS}:443", status="0x8007274c") for n in range(4))
    d = stale_hosts_case(tmp_path, also)
    assert d["causes"][0]["id"] == "name-resolution-mismatch"
    backend = next(c for c in d["causes"] if c["id"] == "backend-unreachable")
    assert backend["certainty"] == pytest.approx(0.6)
    assert "timeouts-to-misresolved-address" not in [r["id"] for r in backend["rules"]]


SERVICES = REPO / "tests" / "data" / "services"


def services_case(tmp_path: Path, exports: list[Path], internal_name: str | None) -> dict[str, Any]:
    profile = tmp_path / "site.yaml"
    profile.write_text(
        'exchange_version: "2010"\npublished: [owa]\ninternal_addresses: [192.0.2.11]\n'
        + (f"internal_name: {internal_name}\n" if internal_name else ""),
        encoding="utf-8",
    )
    args = [a for e in exports for a in ("--services-export", str(e))]
    d = run_json("--profile", str(profile), *args)
    assert (d["verdict"], d["causes"][0]["id"]) == ("misconfiguration", "exchange-fba-service-stopped")
    return d


def fba_explanation(d: dict[str, Any]) -> str:
    return explanations(d, "exchange-fba-service-stopped")["exchange-fba-service-stopped"]


@pytest.mark.parametrize("recorded", ["sc-query-cas2010.txt", "get-service-ps51.csv"])
def test_the_only_export_without_a_server_name_is_the_profiles_server(tmp_path: Path, recorded: str) -> None:
    """`sc query` names no server and Get-Service writes MachineName "." on the local machine."""
    export = tmp_path / recorded
    export.write_bytes((SERVICES / recorded).read_bytes())
    d = services_case(tmp_path, [export], "cas01.contoso.local")
    assert fba_explanation(d) == "MSExchangeFBA is stopped on cas01.contoso.local while OWA/ECP is published"
    fba = next(f for f in d["facts"] if f["kind"] == "service.state" and f["attrs"]["name"] == "MSExchangeFBA")
    assert (fba["attrs"]["host"], fba["attrs"]["host_from"]) == ("cas01.contoso.local", "profile")
    assert fba["provenance"]["source"] == str(export)


def test_exports_without_a_server_name_are_named_by_their_files_otherwise(tmp_path: Path) -> None:
    """Without an internal name, or with two exports (which CAS is which?), the file names the server."""
    only = tmp_path / "cas01-services.txt"
    only.write_bytes((SERVICES / "sc-query-cas2010.txt").read_bytes())
    d = services_case(tmp_path, [only], None)
    assert fba_explanation(d) == "MSExchangeFBA is stopped on cas01-services.txt while OWA/ECP is published"
    healthy = tmp_path / "cas02-services.txt"
    healthy.write_bytes((SERVICES / "sc-query-cas2010.txt").read_bytes().replace(b"1  STOPPED", b"4  RUNNING"))
    d = services_case(tmp_path, [only, healthy], "cas.contoso.local")
    assert fba_explanation(d) == "MSExchangeFBA is stopped on cas01-services.txt while OWA/ECP is published"
    hosts = {(f["attrs"]["host"], f["attrs"]["host_from"]) for f in d["facts"] if f["kind"] == "service.state"}
    assert hosts == {("cas01-services.txt", "file"), ("cas02-services.txt", "file")}


def test_an_export_that_names_its_server_is_named_by_it(tmp_path: Path) -> None:
    export = tmp_path / "services.csv"
    export.write_bytes((SERVICES / "get-service-ps51.csv").read_bytes().replace(b'","."', b'","CAS07"'))
    d = services_case(tmp_path, [export], "cas01.contoso.local")
    assert fba_explanation(d) == "MSExchangeFBA is stopped on CAS07 while OWA/ECP is published"


CEST = 2 * 3600  # Europe/Berlin in May


def local_clock_case(tmp_path: Path) -> tuple[Path, Path]:
    """TMG (ISA text log) and the capturing host (NetMon 2.1) both on Berlin time: four dirty closes
    on the server leg, each logged as Status 64."""
    segs, rows = [], []
    for n in range(4):
        port = 31000 + n
        segs += segments("dirty-close", (TMG, port), (CAS, 443), S + CEST + 10 * n + 0.5, n)
        rows.append(isa_text_row(time.gmtime(S + CEST + 10 * n + 1), f"{TMG}:{port}", f"{CAS}:443"))
    cap = synth.write_file(tmp_path / "tmg.cap", "netmon2.1", synth.records_for(sorted(segs, key=lambda s: s.ts)))
    log = tmp_path / "ISALOG_20240504_FWS_000.iis"
    log.write_text("".join(r + "\r\n" for r in rows), encoding="utf-8")
    return cap, log


NOTE = "logs and capture matched in local time without --tz: tmg.cap, ISALOG_20240504_FWS_000.iis read as UTC"


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "html"])
def test_local_clocks_matched_without_tz_say_so_on_stderr_and_in_the_report(tmp_path: Path, fmt: str) -> None:
    cap, log = local_clock_case(tmp_path)
    profile = tmp_path / "site.yaml"
    profile.write_text(f"internal_addresses: [{CAS}]\ntmg_addresses: [{TMG}]\n", encoding="utf-8")
    args = ("run", "--offline", "--no-input", "--profile", str(profile), "--capture", str(cap), "--log", str(log))
    done = run_cli(*args, "--format", fmt)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "without --tz" in line]
    assert len(said) == 1 and said[0].startswith(f"diagnose: {NOTE}; ")
    shown = re.sub(r"\\(.)", r"\1", done.stdout) if fmt == "markdown" else done.stdout  # as Markdown renders it
    assert shown.count(NOTE) == (2 if fmt == "json" else 1)  # JSON: in notes, and in the fact
    if fmt == "json":
        d = json.loads(done.stdout)
        assert d["notes"][0].startswith(NOTE)
        assert (d["verdict"], d["causes"][0]["id"]) == ("benign", "dirty-close-by-design")
        match = next(f for f in d["facts"] if f["kind"] == "capture.status64_match")["attrs"]
        assert match["matched_dirty_close_by_tmg"] == 4  # the clocks agree, so it matched
        assert match["local_without_tz"] == ["tmg.cap", "ISALOG_20240504_FWS_000.iis"]
    with_tz = run_cli(*args, "--tz", "Europe/Berlin", "--format", fmt)
    assert with_tz.returncode == 0, with_tz.stderr
    assert "without --tz" not in with_tz.stderr + with_tz.stdout


def test_utc_logs_and_captures_need_no_note(tmp_path: Path) -> None:
    segs = segments("dirty-close", (TMG, 31024), (CAS, 443), S + 0.5)
    cap = synth.write_file(tmp_path / "t.pcap", "pcap", synth.records_for(segs))
    log = write_w3c(tmp_path / "fws.w3c", [fw_row(S + 1, f"{TMG}:31024", f"{CAS}:443")])
    attrs, _ = match([cap], [log])
    assert attrs["matched_dirty_close_by_tmg"] == 1
    assert "local_without_tz" not in attrs and "clock_note" not in attrs
    # a NetMon text export is in the capturing host's local time: said, without --tz only
    text = write_text(tmp_path / "trace.txt", segs)
    attrs, _ = match([text], [log])
    assert attrs["local_without_tz"] == ("trace.txt",) and attrs["clock_note"].startswith(
        "logs and capture matched in local time without --tz: trace.txt read as UTC; "
    )
    attrs, _ = match([text], [log], tz="UTC")
    assert "clock_note" not in attrs


@pytest.mark.parametrize("case", ["flood-one", "flood-several", "stale-hosts", "stale-hosts-and-cas"])
def test_both_engines_fire_alike_on_these_bundles(tmp_path: Path, case: str) -> None:
    """The new joins (dns.address to a log scope's server, the leg's counts to the server's) and
    `exists: false` fire identically under durable_rules and the reference evaluator on the bundles
    collected from the raw files above."""
    from diagnose.diagnosis import diagnosis_facts
    from diagnose.engine import create_engine
    from diagnose.facts import load_bundle
    from diagnose.paths import data_dir
    from diagnose.rulebook.loader import load_rulebook

    if case.startswith("flood"):
        senders = {"203.0.113.7": 40} if case == "flood-one" else {"203.0.113.7": 30, "198.51.100.9": 5}
        log = flood_log(tmp_path / "ISALOG_20240504_FWS_000.w3c", senders)
        args = ["--profile", str(flood_profile(tmp_path)), "--log", str(log)]
    else:
        also = (fw_row(S + 7, f"{TMG}:41000", f"{CAS}:443", status="0x8007274c"),) if case.endswith("cas") else ()
        args = stale_hosts_inputs(tmp_path, also)
    bundle = tmp_path / "bundle.json"
    done = run_cli("collect", "--offline", "--no-input", *args, "-o", str(bundle))
    assert done.returncode == 0, done.stderr
    facts = diagnosis_facts(load_bundle(bundle))
    rulebook = load_rulebook([data_dir("rules")])
    fired = [
        sorted(f.key() for f in create_engine(rulebook, name).run(facts).firings) for name in ("durable", "reference")
    ]
    assert fired[0] == fired[1]
    wanted = {
        "flood-one": "flood-mitigation-one-source",
        "flood-several": "flood-mitigation-denials",
        "stale-hosts": "timeouts-to-misresolved-address",
    }.get(case)
    ids = {rule for rule, _ in fired[0]}
    if wanted:
        assert wanted in ids
    else:
        assert "timeouts-to-misresolved-address" not in ids and "backend-refused-or-timed-out" in ids
