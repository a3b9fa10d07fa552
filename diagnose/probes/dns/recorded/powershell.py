"""Recorded answers from PowerShell's `Resolve-DnsName` (DnsClient module, Windows Server 2012 and later).

The format facts and where they come from:
- Records print as a table, `Name  Type  TTL  Section  IPAddress` (NameHost instead of IPAddress when
  the first record is a CNAME), under a row of dashes; a name wider than its column wraps onto the
  next line (`storageaccount.file.core.windows.` / `net`). Records of another type than the first
  print as lists instead (`Name : ...`, `QueryType : A`, `TTL`, `Section`, `IP4Address`/`IP6Address`,
  or `NameHost`), one block per record. A query with no record of a type shows the zone's SOA in the
  Authority section. [MicrosoftDocs/azure-docs articles/storage/file-sync/file-sync-networking-overview.md,
  articles/storage/files/storage-files-networking-dns.md; polyswarm and Ziti docs pasted on GitHub]
- Without -Type it asks A and AAAA (A_AAAA) and lists AAAA records first. [MicrosoftDocs/windows-
  powershell-docs docset/winserver2022-ps/dnsclient/Resolve-DnsName.md]
- Errors are PowerShell error records: `Resolve-DnsName : NAME : DNS name does not exist`, a position
  line (`At line:1 char:1`, localised `En línea: 8 Carácter: 16`), `+ ...` lines and
  `+ FullyQualifiedErrorId : DNS_ERROR_RCODE_NAME_ERROR,Microsoft.DnsClient.Commands.ResolveDnsName`.
  The error id does not depend on the display language: DNS_ERROR_RCODE_NAME_ERROR (NXDOMAIN),
  RCODE_SERVER_FAILURE (SERVFAIL), ERROR_TIMEOUT ("This operation returned because the timeout
  period expired"). [Quad9DNS/documentation#6, microsoft/terminal#14447, MultiPoolMiner/
  MultiPoolMiner#439] PowerShell 7 prints only `Resolve-DnsName: NAME : MESSAGE`; the English message
  then tells the outcome. REFUSED's id and message (DNS_ERROR_RCODE_REFUSED, "DNS request refused")
  are the Win32 ones and were not seen in a recording.
- Without -Server the query goes to the host's configured resolvers (and may be answered from the
  HOSTS file or the cache): the answers are recorded as from server "recorded".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdatatype

from diagnose.compat import zip_strict
from diagnose.errors import InputError
from diagnose.probes.dns.recorded.model import (
    AAAA,
    TIMEOUT,
    A,
    Outcome,
    Run,
    chain_from,
    dns_name,
    family,
    ip_address,
    server_label,
)
from diagnose.probes.dns.recorded.transcript import Command

NODATA = "no data"
UNNAMED_SERVER = "recorded"
_TABLE_HEADER = re.compile(r"^Name\s+Type\s+TTL\s+Section\b")
_RULE = re.compile(r"^-+(?:\s+-+)*$")
_FIELD = re.compile(r"^(?P<key>[A-Za-z][A-Za-z0-9]*)\s*:(?:\s(?P<value>.*))?$")
_ERROR = re.compile(r"^Resolve-DnsName ?: (?P<name>\S+) : (?P<message>.*?)\.?$", re.IGNORECASE)
_ERROR_ID = re.compile(r"^\s*\+ FullyQualifiedErrorId\s*:\s*(?P<id>\w+)")
_ERROR_IDS: dict[str, int | str | None] = {
    "DNS_ERROR_RCODE_NAME_ERROR": dns.rcode.NXDOMAIN,
    "RCODE_NAME_ERROR": dns.rcode.NXDOMAIN,
    "DNS_ERROR_RCODE_SERVER_FAILURE": dns.rcode.SERVFAIL,
    "RCODE_SERVER_FAILURE": dns.rcode.SERVFAIL,
    "DNS_ERROR_RCODE_REFUSED": dns.rcode.REFUSED,
    "RCODE_REFUSED": dns.rcode.REFUSED,
    "DNS_ERROR_RCODE_FORMAT_ERROR": dns.rcode.FORMERR,
    "RCODE_FORMAT_ERROR": dns.rcode.FORMERR,
    "DNS_ERROR_RCODE_NOT_IMPLEMENTED": dns.rcode.NOTIMP,
    "RCODE_NOT_IMPLEMENTED": dns.rcode.NOTIMP,
    "ERROR_TIMEOUT": TIMEOUT,
    "DNS_INFO_NO_RECORDS": NODATA,
}
_MESSAGES: dict[str, int | str | None] = {
    "dns name does not exist": dns.rcode.NXDOMAIN,
    "dns server failure": dns.rcode.SERVFAIL,
    "dns request refused": dns.rcode.REFUSED,
    "this operation returned because the timeout period expired": TIMEOUT,
    "no records found for given dns query": NODATA,
}
_ADDRESS_FIELDS = ("IPAddress", "IP4Address", "IP6Address", "Address")


@dataclass
class _Record:
    name: str
    rdtype: str
    section: str
    data: str
    line: int


@dataclass
class _Call:
    """One Resolve-DnsName command and what it printed."""

    start: int
    explicit: bool
    name: str | None = None
    server: str | None = None
    types: frozenset[dns.rdatatype.RdataType] | None = None  # None: A_AAAA
    skip: bool = False
    records: list[_Record] = field(default_factory=list)
    error: tuple[int | str | None, str, int] | None = None

    def names(self) -> set[str]:
        answers = [r for r in self.records if r.section.lower() == "answer"]
        return {_norm(r.name) for r in answers} | {_norm(r.data) for r in answers if r.rdtype.upper() == "CNAME"}


def _norm(name: str) -> str:
    return name.lower().rstrip(".")


class _Reader:
    def __init__(self, source: str, command: Command | None) -> None:
        self.source = source
        self.runs: list[Run] = []
        self.call: _Call | None = None
        self.mode: str | None = None  # "header" | "table" | "list" | "error"
        self.header = ""
        self.columns: list[tuple[str, int, int | None]] = []
        self.rows: list[tuple[dict[str, str], int]] = []
        self.fields: dict[str, str] = {}
        self.field_line = 0
        self.last_key = ""
        if command is not None:
            self.call = self._command(command)

    def where(self, number: int) -> str:
        return f"{self.source}:{number}"

    def _command(self, command: Command) -> _Call:
        """-Name, -Type and -Server (by name, abbreviated, `-Name:x`, or by position: name, then type)."""
        call = _Call(command.line, explicit=True)
        positional: list[str] = []
        args = list(command.args)
        while args:
            arg = args.pop(0)
            if not (arg.startswith("-") and len(arg) > 1):
                positional.append(arg)
                continue
            key, colon, value = arg[1:].partition(":")
            key = key.lower()
            param = (
                "name"
                if "name".startswith(key)
                else "type"
                if key.startswith("ty") and "type".startswith(key)
                else "server"
                if "server".startswith(key)
                else None
            )
            if param is None:
                continue  # a switch: -DnsOnly, -NoHostsFile, -QuickTimeout...
            if not colon and args:
                value = args.pop(0)
            if param == "name":
                call.name = value
            elif param == "type":
                call.types, call.skip = _types(value)
            else:
                call.server = value.split(",")[0]
        if positional and call.name is None:
            call.name = positional.pop(0)
        if positional:
            call.types, call.skip = _types(positional[0])
        return call

    # -- lines
    def feed(self, number: int, line: str) -> None:
        if not line.strip():
            self._end_block()
            return
        if m := _ERROR.match(line):
            self._end_block()
            kind = _MESSAGES.get(m.group("message").strip().lower(), "unknown")
            call = self._call_for(number, error=True)
            call.error = (kind, m.group("name"), number)
            self.mode = "error"
            return
        if self.mode == "error" and not _TABLE_HEADER.match(line):  # the rest of the record: position, `+` lines, id
            if (m := _ERROR_ID.match(line)) and self.call is not None and self.call.error is not None:
                if m.group("id") not in _ERROR_IDS:
                    raise InputError(f"unknown Resolve-DnsName error {m.group('id')!r}", self.where(number))
                _kind, name, at = self.call.error
                self.call.error = (_ERROR_IDS[m.group("id")], name, at)
            return
        if self.call is not None and self.call.skip:
            return
        if _TABLE_HEADER.match(line):
            self._end_block()
            self.mode, self.header, self.field_line = "header", line, number
        elif self.mode == "header":
            if not _RULE.match(line):
                raise InputError("a Resolve-DnsName table header without its row of dashes", self.where(number))
            starts = [m.start() for m in re.finditer(r"-+", line)]
            ends: list[int | None] = [*starts[1:], None]
            self.columns = [(self.header[s:e].strip(), s, e) for s, e in zip_strict(starts, ends)]
            self.mode = "table"
        elif self.mode == "table":
            self._row(number, line)
        elif (m := _FIELD.match(line)) and self.mode in (None, "list"):
            key = m.group("key")
            if key in self.fields:  # a new record without the blank line between
                self._end_block()
            if not self.fields:
                self.field_line = number
            self.fields[key] = (m.group("value") or "").strip()
            self.last_key, self.mode = key, "list"
        elif self.mode == "list" and line[0] in " \t":
            self.fields[self.last_key] += line.strip()  # a long value wrapped
        else:
            raise InputError(f"cannot read this Resolve-DnsName line: {line.strip()!r}", self.where(number))

    def _row(self, number: int, line: str) -> None:
        cells = {name: line[start:end].strip() if start < len(line) else "" for name, start, end in self.columns}
        first = self.columns[0][0]
        if self.rows and not any(v for k, v in cells.items() if k != first):
            self.rows[-1][0][first] += cells[first]  # a name too wide for its column, wrapped
            return
        if not all(cells.values()):
            raise InputError(
                f"a Resolve-DnsName table row with empty columns (cut short?): {line.strip()!r}", self.where(number)
            )
        self.rows.append((cells, number))

    def _end_block(self) -> None:
        if self.mode == "header":
            raise InputError(
                "a Resolve-DnsName table header without its rows (file cut short?)", self.where(self.field_line)
            )
        for cells, number in self.rows:
            self._record(cells, number)
        if self.fields:
            self._record(self.fields, self.field_line)
        self.rows, self.fields, self.mode = [], {}, None

    def _record(self, fields: dict[str, str], number: int) -> None:
        name = fields.get("Name", "")
        rdtype = fields.get("Type") or fields.get("QueryType") or ""
        if not name or not rdtype:
            raise InputError("a Resolve-DnsName record without its Name and Type", self.where(number))
        data = next((fields[k] for k in _ADDRESS_FIELDS if fields.get(k)), fields.get("NameHost", ""))
        record = _Record(name, rdtype, fields.get("Section", "Answer"), data, number)
        call = self._call_for(number, record=record)
        call.records.append(record)

    def _call_for(self, number: int, error: bool = False, record: _Record | None = None) -> _Call:
        """The call a record or an error belongs to: the command's, or (output without prompts) a new one
        when it cannot belong to the run in progress."""
        call = self.call
        if (
            call is not None
            and not call.explicit
            and (call.records or call.error)
            and (
                error
                or call.error is not None
                or (
                    record is not None and record.section.lower() == "answer" and _norm(record.name) not in call.names()
                )
            )
        ):
            call = None
        if call is None:
            self._finish_call()
            call = self.call = _Call(number, explicit=False)
        return call

    # -- results
    def _finish_call(self) -> None:
        call, self.call = self.call, None
        if call is None or call.skip:
            return
        if not call.records and call.error is None:
            if call.explicit:
                raise InputError(
                    "Resolve-DnsName printed nothing for this command (file cut short, or its errors "
                    "silenced with -ErrorAction?)",
                    self.where(call.start),
                )
            return
        run = self._run(call)
        if run is not None:
            self.runs.append(run)

    def _run(self, call: _Call) -> Run | None:
        answers = [r for r in call.records if r.section.lower() == "answer"]
        cnames = [(r.name, r.data) for r in answers if r.rdtype.upper() == "CNAME"]
        addresses = [r for r in answers if r.rdtype.upper() in ("A", "AAAA")]
        for i, (alias, target) in enumerate(cnames):
            if target.endswith(("...", "…")):  # cut at the console's width: a later record's owner has it
                prefix = target.rstrip(".…")
                full = next((r.name for r in answers if r.name != alias and r.name.startswith(prefix)), None)
                if full is None:
                    raise InputError(
                        f"a CNAME target cut short by the console width: {target!r} (save the "
                        "output with `| Format-List`)",
                        self.where(call.start),
                    )
                cnames[i] = (alias, full)
        where = self.where(call.start)
        first = answers[0].name if answers else None
        error_name = call.error[1] if call.error else None
        text = next((n for n in (first, error_name, call.name) if n), None)
        if text is None:
            raise InputError("cannot tell which name this Resolve-DnsName run asked for", where)
        if ip_address(text) is not None:
            return None  # a reverse lookup
        qname = dns_name(text, where)
        run = Run(qname, _server(call.server), call.start)
        run.chain = chain_from(qname, [(dns_name(a, where), dns_name(t, where)) for a, t in cnames])
        if call.error is not None and call.error[0] == "unknown":
            raise InputError(
                "unknown Resolve-DnsName error (no FullyQualifiedErrorId line to tell which)", self.where(call.error[2])
            )
        for record in addresses:
            if ip_address(record.data) is None or family(record.data).name != record.rdtype.upper():
                raise InputError(f"not an {record.rdtype.upper()} address: {record.data!r}", self.where(record.line))
        no_data = any(r.rdtype.upper() == "SOA" and r.section.lower() == "authority" for r in call.records)
        asked = set(call.types or (A, AAAA)) | {family(r.data) for r in addresses}
        for rdtype in sorted(asked):
            found = [ip_address(r.data) or "" for r in addresses if family(r.data) == rdtype]
            if found:
                run.outcomes[rdtype] = Outcome(0, found)
            elif call.error is not None:
                kind = call.error[0]
                run.outcomes[rdtype] = Outcome(0 if kind == NODATA else kind)  # type: ignore[arg-type]
            elif no_data:
                run.outcomes[rdtype] = Outcome(0)
        return run

    def finish(self) -> list[Run]:
        self._end_block()
        self._finish_call()
        return self.runs


def _types(value: str) -> tuple[frozenset[dns.rdatatype.RdataType] | None, bool]:
    wanted = {"A": frozenset({A}), "AAAA": frozenset({AAAA}), "A_AAAA": None}
    key = value.upper()
    return (wanted[key], False) if key in wanted else (None, True)


def _server(named: str | None) -> str:
    if not named:
        return UNNAMED_SERVER
    address = ip_address(named)
    return server_label(address or named.lower().rstrip("."), 53)


def parse(lines: list[tuple[int, str]], source: str, command: Command | None) -> list[Run]:
    reader = _Reader(source, command)
    for number, line in lines:
        reader.feed(number, line)
    return reader.finish()


def looks_like(line: str) -> bool:
    return bool(_TABLE_HEADER.match(line) or _ERROR.match(line) or re.match(r"^QueryType\s+:", line))
