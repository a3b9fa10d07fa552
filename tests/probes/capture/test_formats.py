"""Capture readers: every format and variant reads back the same connections; damaged files are
read up to the damage and say where reading stopped; the NetMon text of the original case."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import random
import time
from pathlib import Path

import pytest

from diagnose.probes.capture.analysis import analyse
from diagnose.probes.capture.formats import ReadResult, read_capture
from diagnose.probes.capture.tcp import Connection, Tracker
from tests.probes.capture import synth

SEED = Path(__file__).resolve().parents[3].parent / "shared" / "seed" / "000_01b26d6ba0e4eff3.txt"

# The three NetMon lines of the original case, as the blog article shows them (Unicode ellipses).
SEED_LINES = (
    "1348 11:34:15.5026040 10.5716040 TCP TCP:Flags=…A…F, SrcPort=HTTPS(443), DstPort=31024, PayloadLen=0, "
    "Seq=1162679467, Ack=3797497206, Win=7457 (scale factor 0x0) = 7457 {TCP:203, IPv4:1}\n\n"
    "1349 11:34:15.5026040 10.5716040 TCP TCP: [Bad CheckSum]Flags=…A…., SrcPort=31024, DstPort=HTTPS(443), "
    "PayloadLen=0, Seq=3797497206, Ack=1162679468, Win=64033 (scale factor 0x0) = 64033 {TCP:203, IPv4:1}\n\n"
    "1410 11:34:15.8416240 10.9106240 TCP TCP: [Bad CheckSum]Flags=…A.R.., SrcPort=31024, DstPort=HTTPS(443), "
    "PayloadLen=0, Seq=3797497206, Ack=1162679468, Win=0 (scale factor 0x0) = 0 {TCP:203, IPv4:1}\n"
)


def _segments(n: int = 44, **kw) -> list[synth.Segment]:
    return list(synth.conversations(n, seed=9, concurrency=10, **kw))


def _conns(path: Path) -> tuple[list[Connection], ReadResult]:
    result = analyse([path], keep_all=True)
    return result.all_connections, result.reads[0]


def _comparable(conns: list[Connection]) -> list[tuple]:
    """Connections without their file name, times to the microsecond."""
    return sorted(
        dataclasses.astuple(
            dataclasses.replace(c, source="", first_time=round(c.first_time, 6), last_time=round(c.last_time, 6))
        )
        for c in conns
    )


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[synth.Segment], Path, list[tuple]]:
    segs = _segments()
    path = tmp_path_factory.mktemp("twin") / "twin.pcap"
    synth.write_file(path, "pcap", synth.records_for(segs))
    conns, read = _conns(path)
    assert not read.partial and len(conns) == 44
    return segs, path, _comparable(conns)


# -- NetMon .cap ----------------------------------------------------------------------------------
@pytest.mark.parametrize("minor", [0, 1, 2, 3])
def test_netmon_written_in_each_version_reads_back_like_its_pcap_twin(tmp_path: Path, twin, minor: int) -> None:
    segs, _pcap, expected = twin
    path = tmp_path / f"twin-2{minor}.cap"
    with open(path, "wb") as fh:
        synth.write_netmon(fh, synth.records_for(segs), minor=minor)
    conns, read = _conns(path)
    assert read.format == f"netmon 2.{minor}"
    assert not read.partial
    assert _comparable(conns) == expected
    if minor >= 1:  # capture-filter and network-info frames are skipped, not counted as packets
        assert read.skipped["NetMon metadata frame"] == 2
        assert read.frames == len(segs) + 2


@pytest.mark.parametrize("minor", [1, 2, 3])
def test_netmon_netevent_frames_are_unwrapped(tmp_path: Path, twin, minor: int) -> None:
    segs, _pcap, expected = twin
    path = tmp_path / "netevent.cap"
    with open(path, "wb") as fh:
        synth.write_netmon(fh, synth.records_for(segs), minor=minor, netevent_every=3)
    conns, read = _conns(path)
    assert _comparable(conns) == expected
    assert read.tcp_frames == len(segs)


@pytest.mark.parametrize("link", ["sll2", "raw", "null"])
def test_netmon_pcap_link_types_via_0xE000(tmp_path: Path, link: str) -> None:
    segs = _segments(22)
    ref = synth.write_file(tmp_path / "ref.pcap", "pcap", synth.records_for(segs, link), synth.LINKTYPE[link])
    cap = synth.write_file(tmp_path / "x.cap", "netmon2.2", synth.records_for(segs, link), synth.LINKTYPE[link])
    assert _comparable(_conns(cap)[0]) == _comparable(_conns(ref)[0])


def test_netmon_media_type_zero_is_ethernet(tmp_path: Path, twin) -> None:
    segs, _pcap, expected = twin
    buf = io.BytesIO()
    synth.write_netmon(buf, synth.records_for(segs), minor=1, metadata=False)
    data = bytearray(buf.getvalue())
    # every frame's trailer: media type 1 -> 0 (NetMon 3.4 VPN captures)
    import struct

    ft_off, ft_len = struct.unpack_from("<II", data, 24)
    offsets = struct.unpack_from(f"<{ft_len // 4}I", data, ft_off)
    for off in offsets:
        incl = struct.unpack_from("<I", data, off + 12)[0]
        struct.pack_into("<H", data, off + 16 + incl, 0)
    path = tmp_path / "media0.cap"
    path.write_bytes(bytes(data))
    assert _comparable(_conns(path)[0]) == expected


def test_netmon_without_its_frame_table_is_walked_and_marked_partial(tmp_path: Path, twin) -> None:
    segs, _pcap, expected = twin
    buf = io.BytesIO()
    synth.write_netmon(buf, synth.records_for(segs), minor=2, metadata=False)
    data = buf.getvalue()
    import struct

    ft_off = struct.unpack_from("<I", data, 24)[0]
    path = tmp_path / "cut.cap"
    path.write_bytes(data[:ft_off])  # the table (written last) is lost
    conns, read = _conns(path)
    assert read.partial and read.stopped_at == ft_off
    assert "walking" in read.reason
    assert _comparable(conns) == expected


# -- pcap / pcapng variants ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["ns-be", "us-be", "ns-le"])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, twin, variant: str) -> None:
    segs, _pcap, expected = twin
    path = tmp_path / f"{variant}.pcap"
    with open(path, "wb") as fh:
        synth.write_pcap(
            fh, synth.records_for(segs), 1, nanos=variant.startswith("ns"), big_endian=variant.endswith("be")
        )
    conns, read = _conns(path)
    assert read.format.startswith(f"pcap ({variant[:2]}")
    assert _comparable(conns) == expected


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("simple", [False, True])
def test_pcapng_sections_and_simple_packet_blocks(tmp_path: Path, twin, big_endian: bool, simple: bool) -> None:
    segs, _pcap, expected = twin
    path = tmp_path / "x.pcapng"
    with open(path, "wb") as fh:
        synth.write_pcapng(fh, synth.records_for(segs), tsresol={1: 9}, big_endian=big_endian, simple=simple)
    conns, read = _conns(path)
    assert read.format == "pcapng" and not read.partial
    if simple:  # SPBs carry no time: everything but the times must agree
        timed = {"fin_to_rst_seconds", "first_time", "last_time"}
        untimed = [i for i, f in enumerate(dataclasses.fields(Connection)) if f.name not in timed]

        def strip(t: tuple) -> tuple:
            return tuple(t[i] for i in untimed)

        assert sorted(strip(t) for t in _comparable(conns)) == sorted(strip(t) for t in expected)
    else:
        assert _comparable(conns) == expected


def test_pcapng_interfaces_keep_their_own_time_resolution(tmp_path: Path) -> None:
    segs = synth.script_segments(
        synth.SCENARIOS["dirty-close"], ("10.1.0.5", 40000), ("10.0.0.10", 443), 1_700_000_000.0, gap=0.125
    )
    other = synth.script_segments(
        synth.SCENARIOS["dirty-close"], ("10.1.0.6", 40001), ("10.0.0.10", 443), 1_700_000_000.0, conn=1, gap=0.125
    )
    records = [(s.ts, 1, synth.frame("ethernet", synth.ip_packet(s))) for s in segs]
    records += [(s.ts, 113, synth.frame("sll", synth.ip_packet(s))) for s in other]
    path = tmp_path / "two.pcapng"
    with open(path, "wb") as fh:
        synth.write_pcapng(fh, records, tsresol={1: 9, 113: 3})
    conns, _read = _conns(path)
    assert [c.fin_to_rst_seconds for c in conns] == [pytest.approx(0.25), pytest.approx(0.25)]
    assert [c.first_time for c in conns] == [pytest.approx(1_700_000_000.0)] * 2


# -- gzip -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "netmon2.3", "text"])
def test_gzipped_input_of_any_format(tmp_path: Path, twin, fmt: str) -> None:
    segs, _pcap, expected = twin
    plain = tmp_path / f"plain.{fmt}"
    if fmt == "text":
        with open(plain, "w", encoding="utf-8") as fh:
            synth.write_netmon_text(fh, segs, addresses=True)
    else:
        synth.write_file(plain, fmt, synth.records_for(segs))
    packed = tmp_path / f"packed.{fmt}.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, _ra = _conns(plain)
    b, rb = _conns(packed)
    assert rb.compressed and not rb.partial
    assert _comparable(a) == _comparable(b)
    if fmt != "text":
        assert _comparable(b) == expected


def test_truncated_gzip_keeps_what_was_decompressed(tmp_path: Path, twin) -> None:
    _segs, pcap, _expected = twin
    packed = gzip.compress(pcap.read_bytes())
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    conns, read = _conns(path)
    assert read.partial and "gzip" in read.reason
    assert 0 < read.frames < 400 and conns


# -- NetMon text ----------------------------------------------------------------------------------------
def test_the_three_lines_of_the_original_case_are_a_dirty_close_by_the_tmg(tmp_path: Path, cli) -> None:
    path = tmp_path / "netmon.txt"
    path.write_text(SEED_LINES, encoding="utf-8")
    proc = cli("probe", "capture", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    total = next(f for f in out["facts"] if f["subject"] == "all")["attrs"]
    assert (total["connections"], total["dirty_close"], total["dirty_close_by_tmg"]) == (1, 1, 1)
    assert total["bad_checksums"] == 2 and total["zero_window_resets"] == 1
    [conn] = [f["attrs"] for f in out["facts"] if f["kind"] == "capture.connection"]
    assert conn["teardown"] == "dirty-close"
    assert (conn["fin_by_role"], conn["reset_by_role"], conn["leg"]) == ("server", "tmg", "server")
    assert (conn["first_frame"], conn["fin_frame"], conn["rst_frame"], conn["last_frame"]) == (1348, 1348, 1410, 1410)
    assert conn["fin_to_rst_seconds"] == pytest.approx(0.33902)
    assert conn["rst_zero_window"] is True and conn["conn_state"] == "RSTO"
    assert (conn["originator"], conn["responder"]) == ("?:31024", "?:443")
    # the report can quote the original lines
    assert any(text.startswith("1410 ") for text in out["excerpts"].values())


def test_the_seed_article_itself_reads_as_that_dirty_close() -> None:
    if not SEED.exists():
        pytest.skip("../shared/seed is not present")
    result = analyse([SEED], keep_all=True)
    [conn] = result.all_connections
    assert conn.teardown == "dirty-close" and conn.first_reset_by == "originator"
    assert result.total_bad_checksums == 2


@pytest.mark.parametrize("style", ["dots-spaces", "ellipsis-tabs", "addresses"])
def test_netmon_text_export_matches_the_pcap(tmp_path: Path, twin, style: str) -> None:
    segs, _pcap, expected = twin
    path = tmp_path / "export.txt"
    with open(path, "w", encoding="utf-8") as fh:
        synth.write_netmon_text(
            fh,
            segs,
            ellipsis=style == "ellipsis-tabs",
            tabs=style == "ellipsis-tabs",
            addresses=style == "addresses",
            bad_checksum_from=synth.SERVERS[0],
        )
    conns, read = _conns(path)
    assert read.format == "netmon text" and not read.partial
    want = sorted((t[8], t[9], t[10], t[13], t[14]) for t in expected)  # labels, sides, frame numbers
    got = sorted((c.teardown, c.first_fin_by, c.first_reset_by, c.first_frame, c.last_frame) for c in conns)
    assert got == want
    assert sum(c.bad_checksums for c in conns) == sum(1 for s in segs if s.src == synth.SERVERS[0])
    if style == "addresses":
        assert {c.resp_ip for c in conns} <= set(synth.SERVERS)


def test_netmon_text_in_utf16_as_netmon_saves_it(tmp_path: Path) -> None:
    path = tmp_path / "u16.txt"
    path.write_bytes(SEED_LINES.encode("utf-16"))
    [conn] = _conns(path)[0]
    assert conn.teardown == "dirty-close"


# -- damaged input -------------------------------------------------------------------------------------------
def _formats(tmp_path: Path) -> dict[str, bytes]:
    segs = _segments(22)
    out = {}
    for fmt in ("pcap", "pcap-ns-be", "pcapng", "netmon2.0", "netmon2.1", "netmon2.3"):
        out[fmt] = synth.write_file(tmp_path / f"f.{fmt}", fmt, synth.records_for(segs, "vlan")).read_bytes()
    buf = io.StringIO()
    synth.write_netmon_text(buf, segs)
    out["text"] = buf.getvalue().encode()
    out["pcap.gz"] = gzip.compress(out["pcap"])
    return out


def _formats_plain_pcap(data: bytes) -> bytes:
    return gzip.decompress(data)


def _read_bytes(tmp_path: Path, name: str, data: bytes) -> tuple[ReadResult, int]:
    path = tmp_path / name
    path.write_bytes(data)
    found: list[list] = []
    tracker = Tracker(found.append)
    try:
        result = read_capture(path, tracker)
    except Exception as exc:  # the only allowed failure is a clean InputError
        from diagnose.errors import InputError

        assert isinstance(exc, InputError), repr(exc)
        assert str(path) in str(exc)
        return ReadResult(str(path), stopped_at=0), 0
    tracker.finish_all()
    return result, len(found)


def test_truncated_files_of_every_format_keep_what_was_read(tmp_path: Path) -> None:
    for name, data in _formats(tmp_path).items():
        full, full_conns = _read_bytes(tmp_path, name, data)
        assert not full.partial and full_conns == 22, name
        cuts = sorted({len(data) * k // 17 for k in range(1, 17)} | {len(data) - 1, 25, 130})
        for cut in cuts:
            result, _n = _read_bytes(tmp_path, name, data[:cut])
            assert result.frames <= full.frames, (name, cut)
            if name != "text" and not name.startswith("netmon"):
                # a cut inside a record is always noticed, with the offset of the damaged record
                assert result.partial, (name, cut)
                # (for gzip'd input the offset is into the decompressed stream)
                limit = len(_formats_plain_pcap(data)) if name.endswith(".gz") else cut
                assert result.stopped_at is not None and 0 <= result.stopped_at <= limit, (name, cut)
            if name.startswith("netmon") and cut < len(data) - 4 * full.frames:
                assert result.partial, (name, cut)  # the frame table at the end is gone


def test_fuzzed_files_never_crash_or_hang(tmp_path: Path) -> None:
    rng = random.Random(4)
    started = time.monotonic()
    for name, data in _formats(tmp_path).items():
        for _ in range(60):
            mutated = synth.damaged(data, rng, 12)
            t = time.monotonic()
            result, _n = _read_bytes(tmp_path, name, mutated)
            assert time.monotonic() - t < 5, name
            if result.partial:
                assert (result.stopped_at is not None and result.reason) or result.stopped_at == 0
    assert time.monotonic() - started < 120


def test_not_a_capture_is_one_clean_error(tmp_path: Path, cli) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("nothing to see here\n")
    proc = cli("probe", "capture", str(path))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == f"diagnose: error: {path}@0: not a capture: no pcap, pcapng, NetMon or NetMon "
        "text content (6e6f7468)"
    )
    missing = cli("probe", "capture", str(tmp_path / "missing.pcap"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "capture file not found" in missing.stderr


def test_partial_file_through_the_cli_says_where_reading_stopped(tmp_path: Path, twin, cli) -> None:
    _segs, pcap, _expected = twin
    data = pcap.read_bytes()
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: len(data) - 30])
    proc = cli("probe", "capture", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["probe"]["status"] == "partial"
    total = next(f for f in out["facts"] if f["subject"] == "all")["attrs"]
    assert total["partial"] is True
    [stop] = total["stopped_at"]
    offset = int(stop.split("@")[1].split(":")[0])
    assert 24 <= offset < len(data) - 30
    assert f"cut.pcap@{offset}" in out["probe"]["reason"]
    text = cli("probe", "capture", str(path))
    assert "partial" in text.stdout.splitlines()[0]


# -- legs, roles and the probe's facts -------------------------------------------------------------------------
def _two_legs(tmp_path: Path) -> Path:
    """Clients -> TMG external 203.0.113.1:443 (graceful), TMG internal 10.0.0.1 -> CAS 10.0.0.10:443
    (dirty closes by the TMG, and one server reset)."""
    segs: list[synth.Segment] = []
    t = 1_700_000_000.0
    for i in range(6):
        segs += synth.script_segments(
            synth.SCENARIOS["graceful-server-first"],
            (f"198.51.100.{i + 1}", 50000 + i),
            ("203.0.113.1", 443),
            t,
            conn=2 * i,
        )
        name = "server-reset" if i == 5 else "dirty-close"
        segs += synth.script_segments(
            synth.SCENARIOS[name], ("10.0.0.1", 31000 + i), ("10.0.0.10", 443), t + 0.0005, conn=2 * i + 1
        )
        t += 1
    segs.sort(key=lambda s: s.ts)
    return synth.write_file(tmp_path / "legs.pcap", "pcap", synth.records_for(segs))


@pytest.mark.parametrize("how", ["given", "internal", "inferred"])
def test_legs_and_roles_from_given_or_inferred_tmg(tmp_path: Path, how: str) -> None:
    from diagnose.kinds import fact_kinds
    from diagnose.probes import ProbeContext
    from diagnose.probes.capture import probe

    spec: dict = {"paths": [str(_two_legs(tmp_path))], "samples": 2}
    if how == "given":
        spec["tmg_addresses"] = ["10.0.0.1", "203.0.113.1"]
    elif how == "internal":
        spec["internal_addresses"] = ["10.0.0.10"]
    result = probe(ProbeContext(), spec)
    fact_kinds().check(list(result.facts), "capture probe")
    by_subject = {f.subject: f.attrs for f in result.facts if f.kind == "capture.teardown_summary"}
    server_leg = by_subject["leg:server"]
    assert (server_leg["connections"], server_leg["dirty_close"], server_leg["dirty_close_by_tmg"]) == (6, 5, 5)
    assert (server_leg["reset"], server_leg["reset_by_server"]) == (1, 1)
    assert by_subject["server:10.0.0.10:443"]["dirty_close"] == 5
    assert by_subject["all"]["graceful"] == 6 and by_subject["all"]["tmg_inferred"] is (how != "given")
    if how == "given":
        assert by_subject["leg:client"]["graceful"] == 6
    samples = [f.attrs for f in result.facts if f.kind == "capture.connection"]
    dirty = [s for s in samples if s["teardown"] == "dirty-close"]
    assert len(dirty) == 2 and all((s["reset_by_role"], s["fin_by_role"]) == ("tmg", "server") for s in dirty)
    reset = [s for s in samples if s["teardown"] == "reset"]
    assert reset[0]["reset_by_role"] == "server" and reset[0]["history"] == "ShADar"
