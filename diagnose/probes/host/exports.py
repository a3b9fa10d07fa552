"""Readers for what an administrator can export from the TMG server about its TCP state.

TMG 2010 runs on Windows Server 2008 R2, where the live `host` probe (psutil) cannot run. These
readers take, in the exact shapes Windows writes them:

* `netstat -ano` and `netstat -anob` (TCP and UDP, IPv4 and `[IPv6]` addresses). The `-b` form puts
  the owner on the lines after each connection: an optional component line (`RpcSs`), then the
  executable in brackets (`[wspsrv.exe]`), or "Can not obtain ownership information" (localised).
  The header lines are localised ("Active Connections", "Aktive Verbindungen", "Активные подключения",
  "活动连接") and so, on German Windows only, are the state names (`WARTEND` is TIME_WAIT,
  `SCHLIESSEN_WARTEN` CLOSE_WAIT, `HERGESTELLT` ESTABLISHED, `ABHÖREN` LISTENING); Russian and
  Chinese Windows keep the English state names.
* `netsh int ipv4 show dynamicport tcp` (or ipv6): labels are localised ("Start Port" / "Port de
  démarrage" / "Начальный порт"), so the numbers are read in order: start, then count.
* System events 4227 (an outgoing connection failed because the local endpoint was recently used
  towards the same remote endpoint: TIME_WAIT reuse) and 4231 (no ephemeral port left in the global
  TCP port space) from the Tcpip source, as Event Viewer's "Save All Events As" CSV (a five-name
  header `Level,Date and Time,Source,Event ID,Task Category` over six-field rows, the sixth being the
  quoted, possibly multi-line description), as XML (Event Viewer's `<Events>` document, or
  `wevtutil qe System /f:xml`: `<Event>` elements with no root), or as `wevtutil qe System /f:text`
  (`Event[N]:` blocks whose labels stay English on every language).

Encodings: PowerShell `>` writes UTF-16 LE with a BOM; cmd `>` writes the OEM code page (cp437 US,
cp850 western Europe, cp866 Russian, cp936 Chinese), which is told apart by the header words it
decodes to. Line ends are CRLF.

Every reader works line by line and keeps file:line for what it cites. A file that is none of these,
or a line that cannot be one of its records, is an `InputError` naming file and line; a file cut off
at the end gives what was read and `partial`.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers import expat

from diagnose.bounds import open_regular
from diagnose.errors import InputError
from diagnose.facts import Fact, ProbeStatus, make_fact
from diagnose.probes import ProbeContext, ProbeResult
from diagnose.probes.host.probe import PROBE, HostParams, PortRange, TcpSocket, port_usage_fact, server_leg, tcp_facts

MAX_BYTES = 64 * 1024 * 1024  # an export larger than this is read up to here, and marked partial
MAX_SAMPLES = 5  # event citations kept per event id
TCPIP_SOURCES = ("tcpip", "microsoft-windows-tcpip")
EVENT_NAMES = {4227: "time-wait-endpoint-reuse", 4231: "ephemeral-ports-exhausted"}
WINDOWS_DEFAULT_RANGE = (49152, 65535)  # Windows Vista / Server 2008 and later
WINDOWS_TIME_WAIT_DEFAULT = 240

# netstat state words -> the psutil names the host probe counts (English, and German Windows).
_STATES = {
    "LISTENING": "LISTEN",
    "ABHÖREN": "LISTEN",
    "ESTABLISHED": "ESTABLISHED",
    "HERGESTELLT": "ESTABLISHED",
    "TIME_WAIT": "TIME_WAIT",
    "WARTEND": "TIME_WAIT",
    "CLOSE_WAIT": "CLOSE_WAIT",
    "SCHLIESSEN_WARTEN": "CLOSE_WAIT",
    "SYN_SENT": "SYN_SENT",
    "SYN_GESENDET": "SYN_SENT",
    "SYN_RECEIVED": "SYN_RECV",
    "SYN_EMPFANGEN": "SYN_RECV",
    "FIN_WAIT_1": "FIN_WAIT1",
    "FIN_WARTEN_1": "FIN_WAIT1",
    "FIN_WAIT_2": "FIN_WAIT2",
    "FIN_WARTEN_2": "FIN_WAIT2",
    "LAST_ACK": "LAST_ACK",
    "LETZTES_ACK": "LAST_ACK",
    "CLOSING": "CLOSING",
    "SCHLIESSEND": "CLOSING",
    "CLOSED": "CLOSE",
    "GESCHLOSSEN": "CLOSE",
    "DELETE_TCB": "DELETE",
    "BOUND": "BOUND",
}
# Words that only a given OEM code page decodes into: which one a cmd `>` file was written in.
_OEM_WORDS = {
    "cp866": ("Активные подключения", "Локальный адрес", "Внешний адрес", "Состояние", "Начальный порт"),
    "cp936": ("活动连接", "本地地址", "外部地址", "状态", "协议", "起始端口"),
    "cp850": (
        "Aktive Verbindungen",
        "ABHÖREN",
        "Lokale Adresse",
        "Connexions actives",
        "Port de démarrage",
        "Adresse locale",
        "État",
    ),
    "cp437": (),
}
_DATA_LINE = re.compile(r"^\s*(TCP|UDP)\s+(\S+)\s+(\S+)(?:\s+(\S+))?(?:\s+(\S+))?\s*$")
_LOOKS_DATA = re.compile(r"^\s*(TCP|UDP)\s", re.IGNORECASE)
_NETSH_NUMBER = re.compile(r"^[^:\r\n]+:\s*(\d+)\s*$")
_EVENT_HEAD = re.compile(r"^Event\[(\d+)\]:\s*$")


@dataclass(frozen=True)
class TcpipEvent:
    event_id: int
    time: str
    computer: str
    line: int


@dataclass
class HostExport:
    """What one export file held. `kind` is netstat, netsh or events; `partial` when it was cut off."""

    path: str
    kind: str
    encoding: str
    sockets: list[TcpSocket] = field(default_factory=list)
    owners: dict[int, str] = field(default_factory=dict)  # index in sockets -> executable (`-b`)
    udp: int = 0
    first_line: int = 0
    last_line: int = 0
    unknown_states: Counter = field(default_factory=Counter)
    port_range: PortRange | None = None
    protocol: str = ""
    events: list[TcpipEvent] = field(default_factory=list)
    other_events: int = 0
    partial: str = ""  # why the file is incomplete, with file:line


# --------------------------------------------------------------------------------- decoding


def decode(data: bytes, source: str) -> tuple[str, str]:
    """The text of an export and the encoding it was read in."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise InputError(f"bad UTF-16 text (byte {exc.start})", f"{source}@{exc.start}") from None
    if len(data) >= 4 and data[1] == 0 and data[3] == 0 and data[0] != 0:
        # UTF-16 LE without a BOM (Out-File -Encoding Unicode pieces, cut-off heads)
        try:
            return data.decode("utf-16-le"), "utf-16-le"
        except UnicodeDecodeError as exc:
            raise InputError(f"bad UTF-16 text (byte {exc.start})", f"{source}@{exc.start}") from None
    if b"\x00" in data[:4096]:
        at = data.index(b"\x00")
        raise InputError(
            "binary data, not a text export (an .evtx file? save the events as CSV or XML)", f"{source}@{at}"
        )
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    best, score = "cp850", -1
    for codec, words in _OEM_WORDS.items():
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        found = sum(text.count(w) for w in words)
        if found > score:
            best, score = codec, found
    return data.decode(best, "replace"), best


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def detect(text: str) -> str:
    """netstat | netsh | events-xml | events-text | events-csv | empty | unknown"""
    head = text.lstrip("\ufeff \t\r\n")
    if not head:
        return "empty"
    if head.startswith("<"):
        return "events-xml"
    lines = _lines(text)
    if any(_EVENT_HEAD.match(line.strip()) for line in lines[:50]):
        return "events-text"
    if any(_LOOKS_DATA.match(line) for line in lines[:400]):
        return "netstat"
    if any(set(line.strip()) == {"-"} for line in lines[:10]) and _netsh_numbers(lines):
        return "netsh"
    first = head.split("\n", 1)[0]
    if first.count(",") >= 4 or first.count(";") >= 4 or first.count("\t") >= 4:
        return "events-csv"
    return "unknown"


# --------------------------------------------------------------------------------- netstat


def _split_endpoint(text: str) -> tuple[str, int] | None:
    if text in ("*:*",):
        return None
    addr, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(text)
    if addr.startswith("["):
        if not addr.endswith("]"):
            raise ValueError(text)
        addr = addr[1:-1].split("%")[0]
    return addr, int(port)


def parse_netstat(text: str, out: HostExport) -> None:
    """`netstat -ano` / `-anob` / `-an`: TCP sockets into `out.sockets`, UDP endpoints counted."""
    lines = _lines(text)
    last_text = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    previous: int | None = None  # index of the last TCP socket, for the -b owner lines after it
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        match = _DATA_LINE.match(line)
        if not match:
            if _LOOKS_DATA.match(line):
                if number - 1 == last_text:
                    out.partial = f"{out.path}:{number}: last line cut off"
                    break
                raise InputError(f"unreadable netstat line {line.strip()[:80]!r}", f"{out.path}:{number}")
            owner = line.strip()
            if previous is not None and owner.startswith("[") and owner.endswith("]"):
                out.owners[previous] = owner[1:-1]
            continue
        proto, local, remote, third, _pid = match.groups()
        try:
            lend = _split_endpoint(local)
            rend = _split_endpoint(remote)
        except ValueError as exc:
            if number - 1 == last_text:
                out.partial = f"{out.path}:{number}: last line cut off"
                break
            raise InputError(f"not an address:port in netstat line: {exc}", f"{out.path}:{number}") from None
        out.first_line = out.first_line or number
        out.last_line = number
        if proto == "UDP":
            out.udp += 1
            previous = None
            continue
        if third is None:
            if number - 1 == last_text:
                out.partial = f"{out.path}:{number}: last line cut off (no state)"
                break
            raise InputError("TCP line without a state", f"{out.path}:{number}")
        state = _STATES.get(third.upper())
        if state is None:
            out.unknown_states[third] += 1
            state = "UNKNOWN"
        if lend is None:
            raise InputError("TCP line without a local address", f"{out.path}:{number}")
        laddr, lport = lend
        raddr, rport = rend if rend and rend[1] else (None, None)
        out.sockets.append(TcpSocket(laddr, lport, raddr, rport, state))
        previous = len(out.sockets) - 1
    if not out.sockets and not out.udp and not out.partial:
        raise InputError("no connections in this netstat output", f"{out.path}:1")


# --------------------------------------------------------------------------------- netsh


def _netsh_numbers(lines: Iterable[str]) -> list[tuple[int, int]]:
    found = []
    for number, line in enumerate(lines, 1):
        match = _NETSH_NUMBER.match(line.strip())
        if match:
            found.append((number, int(match.group(1))))
    return found


def parse_netsh(text: str, out: HostExport) -> None:
    """`netsh int ipv4|ipv6 show dynamicport tcp|udp`: the start port and the number of ports."""
    lines = _lines(text)
    numbers = _netsh_numbers(lines)
    if len(numbers) < 2:
        raise InputError(
            "netsh dynamicport output without both start port and number of ports",
            f"{out.path}:{numbers[0][0] if numbers else 1}",
        )
    (line_start, start), (line_count, count) = numbers[0], numbers[1]
    if not 1 <= start <= 65535:
        raise InputError(f"start port {start} is not a port number", f"{out.path}:{line_start}")
    if not 1 <= count <= 65536 - start:
        raise InputError(f"{count} ports from {start} run past 65535", f"{out.path}:{line_count}")
    title = next((line for line in lines if line.strip()), "")
    proto = re.search(r"\b(tcp|udp)\b", title, re.IGNORECASE)
    out.protocol = proto.group(1).lower() if proto else "tcp"
    out.port_range = PortRange(start, start + count - 1, f"{out.path}:{line_start}")
    out.first_line, out.last_line = line_start, line_count


# --------------------------------------------------------------------------------- events


def _take_event(out: HostExport, source: str, event_id: str, time: str, computer: str, line: int) -> None:
    if source.strip().lower() in TCPIP_SOURCES and event_id.strip() in ("4227", "4231"):
        out.events.append(TcpipEvent(int(event_id), time.strip(), computer.strip(), line))
    else:
        out.other_events += 1
    out.first_line = out.first_line or line
    out.last_line = line


def parse_events_text(text: str, out: HostExport) -> None:
    """`wevtutil qe System /f:text`: `Event[N]:` blocks of `  Label: value` lines, then the description."""
    current: dict[str, str] = {}
    start = 0

    def finish() -> None:
        if not current:
            return
        if "Event ID" not in current or "Source" not in current:
            raise_or_partial("event block without Source and Event ID", start)
        _take_event(
            out, current["Source"], current["Event ID"], current.get("Date", ""), current.get("Computer", ""), start
        )

    def raise_or_partial(message: str, line: int) -> None:
        raise InputError(message, f"{out.path}:{line}")

    lines = _lines(text)
    in_description = False
    for number, line in enumerate(lines, 1):
        head = _EVENT_HEAD.match(line.strip())
        if head:
            finish()
            current, start, in_description = {}, number, False
            continue
        if not start:
            if line.strip():
                raise InputError(f"expected `Event[0]:`, found {line.strip()[:60]!r}", f"{out.path}:{number}")
            continue
        if in_description:
            continue
        label = re.match(r"^\s+([A-Za-z][A-Za-z ]*):\s?(.*)$", line)
        if label:
            key = label.group(1).strip()
            current[key] = label.group(2).strip()
            in_description = key == "Description"
    if current:
        if "Event ID" not in current or "Source" not in current:
            out.partial = f"{out.path}:{start}: last event cut off"
        else:
            finish()
    if not start:
        raise InputError("no events in this wevtutil text", f"{out.path}:1")


def parse_events_csv(text: str, out: HostExport) -> None:
    """Event Viewer's "Save All Events As" CSV: Level, Date and Time, Source, Event ID, Task Category
    (header names localised; rows carry a sixth field, the description)."""
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=delimiter, strict=True)
    line = 1
    try:
        header = next(reader)
        if len(header) < 5:
            raise InputError(f"an events CSV header has 5 columns, this one {len(header)}", f"{out.path}:1")
        names = [h.strip().lower() for h in header]
        where = {"source": 2, "id": 3, "time": 1}
        for key, wanted in (("source", "source"), ("id", "event id"), ("time", "date and time")):
            if wanted in names:
                where[key] = names.index(wanted)
        line = reader.line_num + 1
        for row in reader:
            if not any(cell.strip() for cell in row):
                line = reader.line_num + 1
                continue
            if len(row) < 5:
                raise InputError(f"{len(row)} fields in an event row (at least 5 expected)", f"{out.path}:{line}")
            if not row[where["id"]].strip().isdigit():
                raise InputError(f"event id {row[where['id']][:20]!r} is not a number", f"{out.path}:{line}")
            _take_event(out, row[where["source"]], row[where["id"]], row[where["time"]], "", line)
            line = reader.line_num + 1
    except csv.Error as exc:
        # an unterminated quote: the file ends inside a description
        out.partial = f"{out.path}:{line}: {exc} (cut off?)"
    if not out.events and not out.other_events and not out.partial:
        raise InputError("no events in this CSV", f"{out.path}:2")


class _EventXml:
    """expat handlers that pick Provider/@Name, EventID, TimeCreated/@SystemTime and Computer out of each
    `<Event><System>` (never out of `<RenderingInfo>`, whose `<Provider>` and `<Level>` are display text)."""

    def __init__(self, out: HostExport, parser: Any) -> None:
        self.out, self.parser = out, parser
        self.path: list[str] = []
        self.text: list[str] = []
        self.event: dict[str, str] | None = None
        self.line = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rsplit("}", 1)[-1]
        if local == "Event":
            self.event, self.line = {}, self.parser.CurrentLineNumber
        elif self.event is not None and self.path and self.path[-1] == "System":
            if local == "Provider":
                self.event["source"] = attrs.get("Name", "")
            elif local == "TimeCreated":
                self.event["time"] = attrs.get("SystemTime", "")
        self.text = []
        self.path.append(local)

    def end(self, name: str) -> None:
        local = self.path.pop()
        if self.event is None:
            return
        if local in ("EventID", "Computer") and self.path and self.path[-1] == "System":
            self.event[local] = "".join(self.text).strip()
        elif local == "Event":
            e = self.event
            _take_event(
                self.out, e.get("source", ""), e.get("EventID", ""), e.get("time", ""), e.get("Computer", ""), self.line
            )
            self.event = None

    def chars(self, data: str) -> None:
        if len(self.text) < 1000:  # EventID and Computer are short; long texts (Binary, Message) are not kept
            self.text.append(data)

    def refuse(self, *_: object) -> None:
        raise InputError(
            "XML with a DTD or entity declarations is not an event export",
            f"{self.out.path}:{self.parser.CurrentLineNumber}",
        )


def parse_events_xml(text: str, out: HostExport) -> None:
    """Event Viewer's XML (`<Events>` root) or `wevtutil qe /f:xml` (`<Event>` elements, no root).
    DTDs and entities are refused: an export never has them, and they can expand without bound."""
    body = re.sub(r"^\ufeff?\s*<\?xml[^>]*\?>", "", text, count=1)
    parser = expat.ParserCreate()
    handler = _EventXml(out, parser)
    parser.StartDoctypeDeclHandler = handler.refuse
    parser.EntityDeclHandler = handler.refuse
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.chars
    try:
        parser.Parse("<diagnose-events>", False)
        parser.Parse(body, False)
    except expat.ExpatError as exc:
        raise InputError(f"not well-formed XML: {expat.ErrorString(exc.code)}", f"{out.path}:{exc.lineno}") from None
    try:
        parser.Parse("</diagnose-events>", True)
    except expat.ExpatError as exc:  # the text itself was well-formed up to its end: it ends inside an element
        inside = f" inside <{handler.path[-1]}>" if len(handler.path) > 1 else ""
        out.partial = f"{out.path}:{exc.lineno}: XML cut off{inside}"
    if not out.events and not out.other_events and not out.partial:
        raise InputError("no <Event> elements in this XML", f"{out.path}:1")


# --------------------------------------------------------------------------------- entry


def read_host_export(path: Path | str) -> HostExport:
    """Read one export, whatever it is (netstat, netsh or events); errors name file and line."""
    path = Path(path)
    source = str(path)
    try:
        with open_regular(path) as fh:  # a FIFO or device is refused, not waited on
            data = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise InputError("host export not found", source) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a netstat, netsh or events export file", source) from None
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), source) from None
    cut = len(data) > MAX_BYTES
    data = data[:MAX_BYTES]
    if cut and data[:2] in (b"\xff\xfe", b"\xfe\xff") and len(data) % 2:
        data = data[:-1]
    text, encoding = decode(data, source)
    kind = detect(text)
    if kind == "empty":
        raise InputError("host export is empty", f"{source}:1")
    if kind == "unknown":
        lines = _lines(text)
        number = next((i for i, line in enumerate(lines, 1) if line.strip()), 1)
        raise InputError(
            f"unrecognised host export {lines[number - 1].strip()[:60]!r} (expected netstat -ano/-anob, "
            "netsh int ipv4 show dynamicport tcp, or System events as CSV, XML or wevtutil text)",
            f"{source}:{number}",
        )
    out = HostExport(source, kind.split("-")[0], encoding)
    if cut:  # the last line read may be cut: drop it, and say where reading stopped
        text = text[: text.rfind("\n") + 1] if "\n" in text else text
    {
        "netstat": parse_netstat,
        "netsh": parse_netsh,
        "events-text": parse_events_text,
        "events-csv": parse_events_csv,
        "events-xml": parse_events_xml,
    }[kind](text, out)
    if cut:
        out.partial = out.partial or f"{source}: read only the first {MAX_BYTES // (1024 * 1024)} MiB"
    return out


def default_port_range() -> PortRange:
    low, high = WINDOWS_DEFAULT_RANGE
    return PortRange(low, high, "windows-default")


# --------------------------------------------------------------------------------- facts


def _event_facts(exports: list[HostExport], check: str | None) -> list[Fact]:
    facts = []
    for event_id, name in sorted(EVENT_NAMES.items()):
        found = [(x, e) for x in exports for e in x.events if e.event_id == event_id]
        times = sorted(e.time for _, e in found if e.time)
        first = found[0] if found else None
        facts.append(
            make_fact(
                "host.tcpip_event",
                f"event:{event_id}",
                PROBE,
                check=check,
                source=first[0].path if first else ", ".join(x.path for x in exports),
                location=f"line {first[1].line}" if first else None,
                event_id=event_id,
                name=name,
                count=len(found),
                first_time=times[0] if times else None,
                last_time=times[-1] if times else None,
                computers=sorted({e.computer for _, e in found if e.computer}),
                samples=[f"{x.path}:{e.line}" for x, e in found[:MAX_SAMPLES]],
                files=len(exports),
            )
        )
    return facts


def _in_range(export: HostExport, rng: PortRange) -> int:
    return len({s.local_port for s in export.sockets if rng.low <= s.local_port <= rng.high})


def probe_exports(ctx: ProbeContext, spec: HostParams | Mapping[str, Any]) -> ProbeResult:
    """The `host` probe over exported files (`exports`): the same `host.tcp_states` and
    `host.port_usage` facts as the live probe, plus `host.tcpip_event` for events 4227 and 4231."""
    params = HostParams.of(spec)
    paths = params.exports
    exports = []
    for path in paths:
        ctx.progress(ctx.check or PROBE, f"reading {path}")
        exports.append(read_host_export(path))
    notes = []
    ranges = [x.port_range for x in exports if x.kind == "netsh" and x.protocol == "tcp" and x.port_range]
    rng = ranges[0] if ranges else default_port_range()
    if len({(r.low, r.high) for r in ranges}) > 1:
        notes.append(f"several TCP dynamic port ranges given; {rng.low}-{rng.high} from {rng.source} is used")
    facts: list[Fact] = []
    snapshots = [x for x in exports if x.kind == "netstat" and x.sockets]
    if snapshots:
        worst = max(snapshots, key=lambda x: _in_range(x, rng))
        if len(snapshots) > 1:
            notes.append(f"{len(snapshots)} netstat snapshots; the fullest, {worst.path}, is rated")
        leg = server_leg(params)
        if isinstance(leg, ProbeResult):
            return leg
        servers, ports, top = leg
        location = f"lines {worst.first_line}-{worst.last_line}"
        facts += tcp_facts(
            worst.sockets,
            servers,
            ports,
            top,
            ctx.check,
            source=worst.path,
            location=location,
            owners=worst.owners,
        )
        facts.append(
            port_usage_fact(
                worst.sockets, rng, ctx.check, (WINDOWS_TIME_WAIT_DEFAULT, "windows-default"), worst.path, location
            )
        )
        if not ranges:
            notes.append("no netsh dynamicport export: the Windows default range 49152-65535 is assumed")
        if not servers:
            notes.append("no internal server addresses, so the TMG-to-server leg is not marked")
    elif ranges:
        notes.append("a port range but no netstat output: port usage cannot be measured")
    event_files = [x for x in exports if x.kind == "events"]
    if event_files:
        facts += _event_facts(event_files, ctx.check)
    partial = [x.partial for x in exports if x.partial]
    for x in exports:
        if x.unknown_states:
            words = ", ".join(f"{w} ({n})" for w, n in x.unknown_states.most_common(5))
            notes.append(f"{x.path}: state words not known, counted in total only: {words}")
    summary = "; ".join(_describe(x) for x in exports)
    reason = "; ".join([summary, *notes, *(f"partial: {p}" for p in partial)])
    return ProbeResult(tuple(facts), ProbeStatus.PARTIAL if partial else ProbeStatus.COMPLETE, reason)


def _describe(x: HostExport) -> str:
    if x.kind == "netstat":
        return f"{x.path}: netstat, {len(x.sockets)} TCP sockets, {x.udp} UDP ({x.encoding})"
    if x.kind == "netsh" and x.port_range:
        return f"{x.path}: {x.protocol} dynamic ports {x.port_range.low}-{x.port_range.high} ({x.encoding})"
    counts = Counter(e.event_id for e in x.events)
    return f"{x.path}: events, {counts[4231]} of 4231, {counts[4227]} of 4227, {x.other_events} others ({x.encoding})"
