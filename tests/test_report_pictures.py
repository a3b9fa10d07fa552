"""The HTML report's pictures, rendered by a real browser: headless Chromium (Debian's `chromium`)
loads each report offline, its DOM is checked (the ladders' flags, times and frame numbers, the
timeline's bars, the evidence as read, collapsed) and a PNG screenshot is taken; the page holds no
script and loads nothing from elsewhere. Cases: the three examples and two corpus captures with
their logs (skipped when ../shared/corpus is absent). The text ladder of `--why` is checked too."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (scripts/test.sh installs Debian's chromium as root)"
)
CORPUS = REPO.parent / "shared" / "corpus"
OFFLINE = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
]


def test_chromium_is_installed_in_ci() -> None:
    """CI installs chromium (.ci/run): the browser tests must not skip there."""
    if not os.environ.get("CI"):
        pytest.skip("only enforced in CI")
    assert CHROMIUM is not None, "chromium is not installed: .ci/run and scripts/test.sh install it with apt-get"


class _Dom(HTMLParser):
    """Elements with their attributes and their own text, and every SVG <g class="packet"> as
    (frame, time, flags) in page order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self.stack: list[tuple[str, dict[str, str], list[str]]] = []
        self.packets: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = (tag, {k: v or "" for k, v in attrs}, [])
        self.elements.append(el)
        if tag not in ("meta", "br", "hr", "img", "input", "link", "wbr", "col", "source", "area"):  # void
            self.stack.append(el)
        if tag == "g" and "packet" in el[1].get("class", ""):
            self.packets.append({})

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_endtag(self, tag: str) -> None:
        if any(t == tag for t, _a, _x in self.stack):
            while self.stack.pop()[0] != tag:
                pass

    def handle_data(self, data: str) -> None:
        if not self.stack:
            return
        tag, attrs, text = self.stack[-1]
        text.append(data)
        cls = attrs.get("class", "")
        if (
            tag == "text"
            and cls in ("frame", "time", "flags")
            and any(t == "g" and "packet" in a.get("class", "") for t, a, _ in self.stack)
        ):
            self.packets[-1][cls] = self.packets[-1].get(cls, "") + data

    def texts(self, tag: str, cls: str) -> list[str]:
        return ["".join(t).strip() for g, a, t in self.elements if g == tag and a.get("class", "") == cls]

    def count(self, tag: str, cls: str | None = None) -> int:
        return sum(1 for g, a, _ in self.elements if g == tag and (cls is None or a.get("class", "") == cls))


def _render(tmp_path: Path, name: str, *args: str) -> tuple[str, _Dom, Path]:
    """The report of `diagnose run ARGS --format html`, loaded by Chromium: (page source, DOM, PNG)."""
    page = tmp_path / f"{name}.html"
    proc = run_cli("run", *args, "--no-input", "--offline", "--format", "html", "-o", str(page))
    assert proc.returncode in (0, 1), proc.stderr
    source = page.read_text(encoding="utf-8")
    _self_contained(source)
    profile = tmp_path / f"{name}-chromium"
    profile.mkdir()
    assert CHROMIUM is not None
    base = [CHROMIUM, *OFFLINE, f"--user-data-dir={profile}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    png = tmp_path / f"{name}.png"
    shot = subprocess.run(
        [*base, "--window-size=1000,1800", f"--screenshot={png}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    parsed = _Dom()
    parsed.feed(dom.stdout)
    return source, parsed, png


def _self_contained(source: str) -> None:
    """No script, nothing loaded from elsewhere: no src, no <link>, no url() in styles, no href in SVG."""
    dom = _Dom()
    dom.feed(source)
    tags = {tag for tag, _a, _t in dom.elements}
    assert not tags & {
        "script",
        "link",
        "img",
        "iframe",
        "object",
        "embed",
        "audio",
        "video",
        "source",
        "image",
        "use",
        "base",
        "form",
        "meta http-equiv",
    }
    names = {name for _tag, attrs, _t in dom.elements for name in attrs}
    assert not {n for n in names if n.startswith("on")}  # no event handlers
    assert not names & {"src", "srcset", "xlink:href", "action", "formaction", "background", "poster"}
    inside_svg = [a for tag, a, _t in dom.elements if tag in ("svg", "g", "text", "rect", "line", "polygon", "title")]
    assert all("href" not in a for a in inside_svg)
    style = "".join("".join(t) for tag, _a, t in dom.elements if tag == "style").lower()
    assert "url(" not in style and "@import" not in style


def _details_closed(dom: _Dom) -> None:
    details = [a for g, a, _ in dom.elements if g == "details"]
    assert details and all("open" not in a for a in details)


@needs_chromium
def test_seed_report_draws_the_experts_ladder(tmp_path: Path) -> None:
    _source, dom, _png = _render(tmp_path, "seed", "--example", "seed")
    # the ladder: TMG and the CAS by role and address, the server's FIN,ACK, TMG's ACK, TMG's RST,ACK 0.34 s later
    assert dom.texts("text", "endpoint")[:2] == ["TMG 10.1.4.98:31024", "server 10.1.5.11:443"]
    assert [(p["frame"], p["time"], p["flags"]) for p in dom.packets] == [
        ("1348", "0.000000", "FIN,ACK"),
        ("1349", "0.000000", "ACK"),
        ("1410", "0.339020", "RST,ACK"),
    ]
    details = dom.texts("text", "detail")
    assert details[0] == "win 7457, len 0" and details[2] == "win 0, len 0, bad checksum"
    (teardown,) = dom.texts("text", "teardown")
    assert teardown.startswith("dirty-close: server FIN,ACK (frame 1348), then TMG RST,ACK 0.339 s later (frame 1410)")
    assert dom.texts("text", "status64") == ["Status 64 logged: ISALOG_20110504_FWS_000.w3c:7"]
    # the matched log line, word for word, with its file:line
    page = " ".join("".join(t) for _g, _a, t in dom.elements)
    assert "ISALOG_20110504_FWS_000.w3c:7" in page and "Failed Connection Attempt\t0x80070040" in page
    # the timeline: one Status 64 entry at 11:34, the capture window marked
    assert [(a["data-count"]) for g, a, _ in dom.elements if g == "rect" and a.get("class") == "s64"] == ["1"]
    assert dom.count("rect", "capture") == 1 and dom.count("rect", "client-error") == 0
    _details_closed(dom)
    # the frames behind the match as read: the export's lines, and the ACK the capture probe decoded
    read = "".join(t for g, _a, ts in dom.elements if g == "pre" for t in ts)
    assert "netmon-trace.txt:3  1410\t11:34:15.8416240" in read
    assert "netmon-trace.txt frame 1349  (decoded) -> ACK win 64033 len 0" in read
    # the undecided list: each missing kind once
    undecided = [li for li in re.findall(r"<li>without (.*?)</li>", _source)]
    kinds = [re.sub(r"<[^>]+>", "", u).split(":")[0] for u in undecided]
    assert kinds and len(kinds) == len(set(kinds))


@needs_chromium
@pytest.mark.parametrize(("example", "status64", "client_errors"), [("dns-mismatch", 57, 15), ("fba-stopped", 31, 11)])
def test_example_timelines_show_status64_beside_client_failures(
    tmp_path: Path, example: str, status64: int, client_errors: int
) -> None:
    _source, dom, _png = _render(tmp_path, example, "--example", example)
    bars = [int(a["data-count"]) for g, a, _ in dom.elements if g == "rect" and a.get("class") == "s64"]
    errors = [int(a["data-count"]) for g, a, _ in dom.elements if g == "rect" and a.get("class") == "client-error"]
    assert sum(bars) == status64 and sum(errors) == client_errors
    assert dom.texts("text", "peak") == [str(max(bars))]
    assert dom.count("svg", "ladder") == 0  # no capture given: no ladder


def _corpus(*names: str) -> list[Path]:
    paths = [CORPUS / n for n in names]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"the shared corpus is not here ({CORPUS})")
    return paths


@needs_chromium
def test_corpus_refused_connection_is_drawn_under_the_cause(tmp_path: Path) -> None:
    cap, log = _corpus("pcaps/cs_tcp_refuseconnection.pcapng", "tmg-logs/isa2004_firewall_w3c_ISALOG_FWS.w3c")
    _source, dom, _png = _render(tmp_path, "refused", "--capture", str(cap), "--log", str(log))
    assert [(p["frame"], p["time"], p["flags"]) for p in dom.packets] == [
        ("1", "0.000000", "SYN"),
        ("2", "0.001316", "RST,ACK"),
    ]
    assert dom.texts("text", "endpoint") == ["TMG 192.168.100.138:3372", "server 192.168.100.1:80"]
    assert dom.texts("text", "teardown") == ["refused: server RST,ACK (frame 2)"]
    read = "".join(t for g, _a, ts in dom.elements if g == "pre" for t in ts)
    assert "cs_tcp_refuseconnection.pcapng frame 2  (decoded) <- RST,ACK win 0 len 0" in read


@needs_chromium
def test_corpus_http_capture_draws_the_cited_connections(tmp_path: Path) -> None:
    cap, log = _corpus("pcaps/ppp_http-packets2.pcap", "tmg-logs/isa2004_webproxy_w3c_ISALOG_WEB.w3c")
    _source, dom, _png = _render(tmp_path, "http", "--capture", str(cap), "--log", str(log))
    frames = [(p["frame"], p["flags"]) for p in dom.packets]
    # the half close (frames 39 and 44) and the graceful close of the first stream (tshark: stream 0)
    assert frames[:2] == [("39", "FIN,ACK"), ("44", "ACK")]
    assert ("3", "FIN,ACK") in frames and ("5", "FIN,ACK") in frames
    assert all(re.fullmatch(r"\d+\.\d{6}", p["time"]) for p in dom.packets)


def test_why_shows_the_text_ladder_of_the_top_cause() -> None:
    proc = run_cli("run", "--example", "seed", "--why")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    section = text[text.index("Packets of the top cause's connection") : text.index("Rules considered")]
    lines = section.splitlines()
    assert "TMG 10.1.4.98:31024" in lines[1] and "server 10.1.5.11:443" in lines[1]
    assert re.search(r"^\s+1348\s+0\.000000 \|<-+ FIN,ACK win=7457 len=0 -+\|$", section, re.M)
    assert re.search(r"^\s+1410\s+0\.339020 \|-+ RST,ACK win=0 len=0 -+>\|  bad checksum$", section, re.M)
    assert "ISALOG_20110504_FWS_000.w3c:7" in section


def test_hostile_evidence_is_shown_as_text(tmp_path: Path) -> None:
    """Markup and control characters in recorded facts and excerpts reach the page as text: no element,
    no control character, in the ladder, the timeline or the lines as read."""
    hostile = {
        "format_version": 1,
        "facts": [
            {
                "kind": "log.status_summary",
                "subject": "all",
                "attrs": {
                    "scope": "all",
                    "status64_count": 3,
                    "connections": 10,
                    "samples": ["logs/a<b>.w3c:7"],
                    "status64_by_hour": ["2011-05-04T11:00:00Z 3", "<script>alert(1)</script> 4"],
                    "burst_minutes": ["<img src=x onerror=alert(1)>"],
                },
                "provenance": {"probe": "logs", "source": "logs/a<b>.w3c", "location": "line 7"},
            },
            {
                "kind": "capture.packets",
                "subject": "x",
                "attrs": {
                    "originator": "<script>evil</script>:1",
                    "responder": "1.2.3.4:443",
                    "originator_role": "tmg\u0007",
                    "responder_role": "server",
                    "teardown": "dirty-close<svg onload=alert(1)>",
                    "first_frame": 5,
                    "last_frame": 9,
                    "packets": 2,
                    "omitted": 0,
                    "chosen_for": "</text><script>x</script>",
                    "frames": ["5 0.000000 > FIN,<img/src=x> 7 0 1 2", "9 0.5 < RST\u001b[31m 0 0 3 4 bad-checksum"],
                    "status64": ["logs/a<b>.w3c:7"],
                },
                "provenance": {"probe": "capture", "source": "t<x>.pcap", "location": "frames 5-9"},
            },
        ],
        "excerpts": {"logs/a<b>.w3c:7": "TMG01\t<script>alert(2)</script>\u0000\u001b[2J"},
    }
    bundle = tmp_path / "hostile.json"
    bundle.write_text(json.dumps(hostile), encoding="utf-8")
    page = tmp_path / "hostile.html"
    proc = run_cli("analyze", str(bundle), "--no-input", "--format", "html", "-o", str(page))
    assert proc.returncode in (0, 1), proc.stderr
    source = page.read_text(encoding="utf-8")
    _self_contained(source)
    assert not re.search(r"<(img|svg onload|b>)", source) and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", source)
    assert "FIN,&lt;img/src=x&gt;" in source and "&lt;script&gt;alert(2)&lt;/script&gt;" in source
    assert source.count('class="s64"') == 1  # the unreadable hour is left out, not drawn
