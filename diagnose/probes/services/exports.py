"""Readers for service lists, in the exact shapes Windows and systemd print them.

Every reader turns its input into `ServiceRecord`s with normalised state and start type:

* `sc query [state= all]` / `sc queryex` text (the `STATE` line is `4  RUNNING`, followed by a flag
  line such as `(STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)`), and `sc qc NAME` text (`START_TYPE`);
* `Get-Service | Export-Csv` (Windows PowerShell writes a `#TYPE System.ServiceProcess.ServiceController`
  line first; with `-Encoding UTF8` a BOM; `-UseCulture` on a German system uses `;`);
* `Get-WmiObject Win32_Service` / `Get-CimInstance Win32_Service` exported to CSV: the running state
  is `State` ("Running", "Stop Pending"), the start type `StartMode` ("Auto"); their `Status` column is
  the health ("OK", "Degraded") and is *not* the running state;
* `Get-Service | ConvertTo-Json`: an array (PowerShell 5.1+), a single object (one service), or the
  `{"value": [...], "Count": N}` wrapper that Windows PowerShell 3.0-4.0 produce for arrays; `Status`
  and `StartType` as numbers (ServiceControllerStatus / ServiceStartMode) or names (`-EnumsAsStrings`
  in PowerShell 7); the same for `Get-CimInstance Win32_Service | ConvertTo-Json`;
* `systemctl show` text (blank-line separated `Key=Value` blocks).

Services are matched on their short name (`Name` / `ServiceName` / `SERVICE_NAME` / systemd `Id`),
never on the display name, which Windows localises ("WWW-Publishingdienst" for W3SVC in German).
A file that is not any of these, or is cut off mid-record, raises `InputError` naming file and line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from diagnose.compat import SLOTS
from diagnose.errors import InputError, read_input

# Normalised values (the `state` / `start_type` attributes of `service.state`)
RUNNING, STOPPED, START_PENDING, STOP_PENDING = "running", "stopped", "start-pending", "stop-pending"
PAUSED, CONTINUE_PENDING, PAUSE_PENDING, UNKNOWN = "paused", "continue-pending", "pause-pending", "unknown"
AUTOMATIC, MANUAL, DISABLED = "automatic", "manual", "disabled"

# System.ServiceProcess.ServiceControllerStatus and the SERVICE_* state codes of `sc query` share numbers.
_STATE_CODES = {
    1: STOPPED,
    2: START_PENDING,
    3: STOP_PENDING,
    4: RUNNING,
    5: CONTINUE_PENDING,
    6: PAUSE_PENDING,
    7: PAUSED,
}
# System.ServiceProcess.ServiceStartMode and SERVICE_*_START of `sc qc`; PowerShell 7's
# ServiceStartupType adds AutomaticDelayedStart = 10.
_START_CODES = {0: "boot", 1: "system", 2: AUTOMATIC, 3: MANUAL, 4: DISABLED, 10: AUTOMATIC}

_STATE_WORDS = {
    "running": RUNNING,
    "stopped": STOPPED,
    "startpending": START_PENDING,
    "stoppending": STOP_PENDING,
    "paused": PAUSED,
    "continuepending": CONTINUE_PENDING,
    "pausepending": PAUSE_PENDING,
    "unknown": UNKNOWN,
}
_START_WORDS = {
    "automatic": AUTOMATIC,
    "auto": AUTOMATIC,
    "autostart": AUTOMATIC,
    "automaticdelayedstart": AUTOMATIC,
    "delayedauto": AUTOMATIC,
    "manual": MANUAL,
    "demand": MANUAL,
    "demandstart": MANUAL,
    "disabled": DISABLED,
    "boot": "boot",
    "bootstart": "boot",
    "system": "system",
    "systemstart": "system",
    "unknown": UNKNOWN,
    "invalidvalue": UNKNOWN,
}


@dataclass(frozen=True, **SLOTS)
class ServiceRecord:
    """One service as a backend saw it. `location` is `line N` or a JSON path inside `source`."""

    name: str
    state: str
    start_type: str | None = None
    display_name: str | None = None
    host: str | None = None
    source: str | None = None
    location: str | None = None
    detail: str | None = None  # the raw state text, e.g. "4  RUNNING" or "active (running)"


def state_from(value: Any) -> str:
    """Map a state number or name (any casing, spaces, underscores or hyphens) to the normalised word."""
    if isinstance(value, bool):
        return UNKNOWN
    if isinstance(value, int):
        return _STATE_CODES.get(value, UNKNOWN)
    text = str(value).strip()
    if text.isdigit():
        return _STATE_CODES.get(int(text), UNKNOWN)
    return _STATE_WORDS.get(re.sub(r"[\s_\-]", "", text).lower(), UNKNOWN)


def start_type_from(value: Any) -> str:
    if isinstance(value, bool):
        return UNKNOWN
    if isinstance(value, int):
        return _START_CODES.get(value, UNKNOWN)
    text = str(value).strip()
    if text.isdigit():
        return _START_CODES.get(int(text), UNKNOWN)
    return _START_WORDS.get(re.sub(r"[\s_\-()]", "", text).lower(), UNKNOWN)


# ------------------------------------------------------------------------------------ sc.exe text

_SC_LINE = re.compile(r"^\s*([A-Z][A-Z0-9_]*)\s*:\s?(.*?)\s*$")


def parse_sc_query(text: str, source: str, host: str | None = None) -> list[ServiceRecord]:
    """`sc query` / `sc queryex` output: blocks starting `SERVICE_NAME:`; the state comes from `STATE`."""
    records: list[ServiceRecord] = []
    current: dict[str, Any] | None = None

    def finish() -> None:
        if current is None:
            return
        if "state" not in current:
            hint = (
                "this is `sc qc` output, which has no state: export `sc query state= all`"
                if current.get("qc")
                else "cut off?"
            )
            raise InputError(f"service {current['name']!r} has no STATE line ({hint})", f"{source}:{current['line']}")
        records.append(
            ServiceRecord(
                current["name"],
                current["state"],
                None,
                current.get("display"),
                host,
                source,
                f"line {current['line']}",
                current.get("detail"),
            )
        )

    all_lines = text.splitlines()
    last = len(all_lines)
    for lineno, raw in enumerate(all_lines, 1):
        line = raw.rstrip()
        if not line.strip():
            continue
        stripped = line.strip()
        if stripped.startswith("(") and stripped.endswith(")"):
            continue  # the flag line under STATE: (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)
        if stripped.startswith(":"):
            continue  # a continuation line (DEPENDENCIES of `sc qc`)
        if stripped.startswith("[SC]"):
            if "FAILED" in stripped.upper():
                raise InputError(f"sc reported an error: {stripped}", f"{source}:{lineno}")
            continue
        m = _SC_LINE.match(line)
        if not m:
            if lineno == last and current is not None:
                raise InputError(
                    f"the export ends mid-line inside {current['name']!r} (cut off?)", f"{source}:{lineno}"
                )
            raise InputError(f"not `sc query` output: {stripped[:60]!r}", f"{source}:{lineno}")
        key, value = m.group(1), m.group(2)
        if key == "SERVICE_NAME":
            finish()
            if not value:
                raise InputError("SERVICE_NAME is empty", f"{source}:{lineno}")
            current = {"name": value, "line": lineno}
        elif current is None:
            raise InputError(f"{key} before any SERVICE_NAME: not `sc query` output", f"{source}:{lineno}")
        elif key == "DISPLAY_NAME":
            current["display"] = value
        elif key == "START_TYPE":
            current["qc"] = True
        elif key == "STATE":
            m2 = re.match(r"(\d+)\s+(\S+)", value)
            if not m2:
                raise InputError(f"cannot read STATE {value!r}", f"{source}:{lineno}")
            current["state"] = state_from(int(m2.group(1)))
            current["detail"] = f"{m2.group(1)} {m2.group(2)}"
    finish()
    return records


def parse_sc_qc(text: str, source: str) -> dict[str, tuple[str, str | None]]:
    """`sc qc NAME` output as {short name: (start type, display name)}.

    `START_TYPE : 2   AUTO_START  (DELAYED)` is automatic (delayed start is still automatic)."""
    out: dict[str, tuple[str, str | None]] = {}
    name: str | None = None
    start: str | None = None
    display: str | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or (stripped.startswith("[SC]") and "SUCCESS" in stripped.upper()):
            continue
        if stripped.startswith("[SC]"):
            raise InputError(f"sc reported an error: {stripped}", f"{source}:{lineno}")
        m = _SC_LINE.match(raw)
        if not m:
            continue  # DEPENDENCIES continuation lines are bare names
        key, value = m.group(1), m.group(2)
        if key == "SERVICE_NAME":
            if name and start:
                out[name] = (start, display)
            name, start, display = value, None, None
        elif key == "START_TYPE":
            m2 = re.match(r"(\d+)", value)
            start = start_type_from(int(m2.group(1))) if m2 else start_type_from(value)
        elif key == "DISPLAY_NAME":
            display = value
    if name and start:
        out[name] = (start, display)
    return out


# ------------------------------------------------------------------------------------------ CSV


def parse_csv(text: str, source: str, host: str | None = None) -> list[ServiceRecord]:
    """Get-Service or Win32_Service exported with Export-Csv (with or without `#TYPE`, `,` or `;`)."""
    lines = text.splitlines(keepends=True)
    first = 0
    while first < len(lines) and (not lines[first].strip() or lines[first].startswith("#")):
        first += 1  # blank lines and the `#TYPE System.ServiceProcess.ServiceController` line
    if first >= len(lines):
        raise InputError("no CSV header line", f"{source}:{max(1, first)}")
    header_line = lines[first]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO("".join(lines[first:])), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise InputError(f"malformed CSV header: {exc}", f"{source}:{first + 1}") from None
    columns = {h.strip().lower(): i for i, h in enumerate(header)}
    wmi = "state" in columns and "startmode" in columns
    name_col = columns.get("name", columns.get("servicename"))
    state_col: int | None
    start_col: int | None
    if wmi:
        state_col, start_col = columns["state"], columns["startmode"]
    else:
        state_col = columns.get("status")
        start_col = columns.get("starttype", columns.get("startuptype"))
    if name_col is None or state_col is None:
        raise InputError(
            "not a service export: the header needs Name (or ServiceName) and Status (Get-Service) "
            f"or State and StartMode (Win32_Service); got {', '.join(header[:8])}",
            f"{source}:{first + 1}",
        )
    display_col = columns.get("displayname")
    host_cols = [columns[c] for c in ("systemname", "pscomputername", "machinename") if c in columns]
    records: list[ServiceRecord] = []
    kind = "Win32_Service" if wmi else "Get-Service"
    try:
        for row in reader:
            lineno = first + reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise InputError(
                    f"{len(row)} fields where the header has {len(header)} (cut off or garbled?)",
                    f"{source}:{lineno}",
                )
            name = row[name_col].strip()
            if not name:
                raise InputError("empty service name", f"{source}:{lineno}")
            raw_state = row[state_col].strip()
            state = state_from(raw_state)
            if state == UNKNOWN and raw_state:
                raise InputError(f"unknown service state {raw_state!r} for {name}", f"{source}:{lineno}")
            start = start_type_from(row[start_col]) if start_col is not None and row[start_col].strip() else None
            row_host = next((row[c].strip() for c in host_cols if row[c].strip() not in ("", ".")), None)
            records.append(
                ServiceRecord(
                    name,
                    state,
                    start,
                    row[display_col].strip() if display_col is not None else None,
                    row_host or host,
                    source,
                    f"line {lineno}",
                    f"{kind} {raw_state}",
                )
            )
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc} (cut off or garbled?)", f"{source}:{first + reader.line_num}") from None
    return records


# ----------------------------------------------------------------------------------------- JSON


def parse_json(text: str, source: str, host: str | None = None) -> list[ServiceRecord]:
    """Get-Service / Get-CimInstance Win32_Service piped to ConvertTo-Json, any PowerShell version."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} (column {exc.colno})", f"{source}:{exc.lineno}") from None
    base = "$"
    if isinstance(data, dict) and "value" in data and isinstance(data["value"], list):
        data, base = (
            data["value"],
            "$.value",
        )  # Windows PowerShell 3.0/4.0 array wrapper {"value": [...], "Count": n}
    items: list[tuple[str, Any]]
    if isinstance(data, list):
        items = [(f"{base}[{i}]", item) for i, item in enumerate(data)]
    elif isinstance(data, dict):
        items = [(base, data)]
    else:
        raise InputError("expected a service object or an array of them", f"{source}:$")
    records = []
    for jpath, item in items:
        if not isinstance(item, dict):
            raise InputError("expected a service object", f"{source}:{jpath}")
        keys = {k.lower(): k for k in item}
        wmi = "state" in keys and "startmode" in keys
        name = item.get(keys.get("name", "")) or item.get(keys.get("servicename", ""))
        if not isinstance(name, str) or not name:
            raise InputError("no Name or ServiceName", f"{source}:{jpath}")
        raw_state = item.get(keys["state"]) if wmi else item.get(keys.get("status", ""))
        if raw_state is None:
            raise InputError(f"no {'State' if wmi else 'Status'} for {name}", f"{source}:{jpath}")
        state = state_from(raw_state)
        if state == UNKNOWN:
            raise InputError(f"unknown service state {raw_state!r} for {name}", f"{source}:{jpath}")
        raw_start = item.get(keys["startmode"]) if wmi else item.get(keys.get("starttype", keys.get("startuptype", "")))
        start = start_type_from(raw_start) if raw_start not in (None, "") else None
        display = item.get(keys.get("displayname", ""))
        row_host = next(
            (
                v
                for c in ("systemname", "pscomputername", "machinename")
                if isinstance(v := item.get(keys.get(c, "")), str) and v not in ("", ".")
            ),
            None,
        )
        records.append(
            ServiceRecord(
                name,
                state,
                start,
                display if isinstance(display, str) else None,
                row_host or host,
                source,
                jpath,
                f"{'State' if wmi else 'Status'} {raw_state}",
            )
        )
    return records


# ------------------------------------------------------------------------------------- systemd

_SYSTEMD_ACTIVE = {
    "active": RUNNING,
    "reloading": RUNNING,
    "inactive": STOPPED,
    "failed": STOPPED,
    "activating": START_PENDING,
    "deactivating": STOP_PENDING,
    "maintenance": STOPPED,
    "refreshing": RUNNING,
}
_SYSTEMD_ENABLED = {
    "enabled": AUTOMATIC,
    "enabled-runtime": AUTOMATIC,
    "alias": AUTOMATIC,
    "static": MANUAL,
    "indirect": MANUAL,
    "generated": AUTOMATIC,
    "transient": MANUAL,
    "linked": MANUAL,
    "linked-runtime": MANUAL,
    "disabled": DISABLED,
    "masked": DISABLED,
    "masked-runtime": DISABLED,
    "bad": UNKNOWN,
}


def parse_systemctl_show(text: str, source: str, host: str | None = None) -> list[ServiceRecord]:
    """`systemctl show UNIT...` output; each unit is a block of `Key=Value` lines."""
    records: list[ServiceRecord] = []
    block: dict[str, str] = {}
    start_line = 0

    def finish() -> None:
        if not block:
            return
        unit = block.get("Id") or (block.get("Names", "").split() or [""])[0]
        if not unit:
            raise InputError("unit block without Id or Names", f"{source}:{start_line}")
        if "ActiveState" not in block:
            raise InputError(
                f"unit {unit} has no ActiveState (ask for -p Id,ActiveState,SubState,UnitFileState)",
                f"{source}:{start_line}",
            )
        if block.get("LoadState") == "not-found":
            return
        name = unit[: -len(".service")] if unit.endswith(".service") else unit
        active = block["ActiveState"]
        state = _SYSTEMD_ACTIVE.get(active, UNKNOWN)
        start = _SYSTEMD_ENABLED.get(block["UnitFileState"], UNKNOWN) if block.get("UnitFileState") else None
        sub = block.get("SubState")
        records.append(
            ServiceRecord(
                name,
                state,
                start,
                block.get("Description"),
                host,
                source,
                f"line {start_line}",
                f"{active} ({sub})" if sub else active,
            )
        )

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            finish()
            block = {}
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key):
            raise InputError(f"not `systemctl show` output: {line[:60]!r}", f"{source}:{lineno}")
        if not block:
            start_line = lineno
        block[key] = value
    finish()
    return records


# --------------------------------------------------------------------------------- auto-detect


def _decode(data: bytes, source: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Windows PowerShell `>` redirection and Out-File write UTF-16 with a BOM
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputError(f"bad UTF-16 text (byte {exc.start})", f"{source}@{exc.start}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # `sc query > file` on a western-European system writes the OEM code page
        return data.decode("cp850")


def detect_format(text: str) -> str:
    head = text.lstrip()
    if not head:
        return "empty"
    if head.startswith("[SC]"):
        return "sc"
    if head[0] in "[{":
        return "json"
    first = head.splitlines()[0].strip()
    if first.startswith("#TYPE") or first.startswith('"'):
        return "csv"
    if re.search(r"^\s*SERVICE_NAME\s*:", text, re.M):
        return "sc"
    if re.match(r"[A-Za-z][A-Za-z0-9]*=", first):
        return "systemd"
    if "," in first or ";" in first:
        return "csv"
    return "unknown"


def read_export(path: Path | str, host: str | None = None) -> tuple[str, list[ServiceRecord]]:
    """Read any supported export: returns (format, records). Errors name the file and line."""
    path = Path(path)
    source = str(path)
    data = read_input(path, "services export not found", "is a directory, expected a services export file")
    text = _decode(data, source)
    fmt = detect_format(text)
    parsers = {"json": parse_json, "csv": parse_csv, "sc": parse_sc_query, "systemd": parse_systemctl_show}
    if fmt == "empty":
        raise InputError("services export is empty", f"{source}:1")
    if fmt not in parsers:
        first = text.lstrip().splitlines()[0][:60]
        line = text[: text.find(first)].count("\n") + 1
        raise InputError(
            f"unrecognised services export {first!r} (expected sc query text, Get-Service/Win32_Service CSV "
            "or JSON, or systemctl show)",
            f"{source}:{line}",
        )
    records = parsers[fmt](text, source, host)
    if not records:
        raise InputError(f"no services found in this {fmt} export", f"{source}:1")
    return fmt, records


def merge_start_types(
    records: Iterable[ServiceRecord], start_types: Mapping[str, tuple[str, str | None]]
) -> Iterator[ServiceRecord]:
    """Fill `start_type` (and a missing display name) from `sc qc` results, matched case-insensitively."""
    lowered = {k.lower(): v for k, v in start_types.items()}
    for rec in records:
        found = lowered.get(rec.name.lower())
        if found:
            rec = replace(rec, start_type=found[0], display_name=rec.display_name or found[1])
        yield rec
