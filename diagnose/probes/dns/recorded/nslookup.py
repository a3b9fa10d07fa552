"""Recorded answers from `nslookup` output: Windows nslookup.exe, and BIND's nslookup (Linux, macOS).

Several runs may share a file, as non-interactive runs (`nslookup NAME [SERVER]`), an interactive
session (`> NAME`, `> set type=A`, `> server ADDR`), with or without the prompt lines, in CRLF or LF,
UTF-8, the OEM code page, or UTF-16 with a byte-order mark (what Windows PowerShell's `>` writes).
Each run is one question to one server and gives one answer per record type it asked: A and AAAA are
split by address family. A family a run printed no address of counts as "no data" only where the
output says so, or (BIND) where the command line shows the run asked both families; otherwise that
record type is left unrecorded. The server is the one on the
`Address:` line of the run's header (`Server:` may just say `UnKnown`: nslookup could not find the
server's own name), else the one the command or the session named.

Windows nslookup.exe, the format facts and where they come from:
- The header is `Server:  NAME` and `Address:  ADDR` (two spaces), then a blank line. NAME is the
  server's reverse-lookup name, `UnKnown` when there is none; a timed-out reverse lookup prints
  `DNS request timed out.` / `    timeout was 2 seconds.` before the header. [testssl/testssl.sh#1099,
  AdguardTeam/AdGuardDNS#945, MicrosoftDocs/azure-docs articles/ai-services/speech-service/
  speech-services-private-link.md]
- The answer is `Name:    NAME` (four spaces) and `Address:  ADDR`, or `Addresses:  ADDR` with one
  address per continuation line, indented by a tab and two spaces (pastes show ten spaces); without a
  type option nslookup asks A and AAAA together and lists IPv6 addresses first. `Aliases:  NAME` (with
  continuation lines) follows when CNAMEs were involved: Name is then the canonical name and the
  aliases run from the name asked to the last alias. [blog.gl2i.com en:powershell:dns (raw tab),
  AdguardTeam/AdGuardDNS#945, holmium/dnsforwarder#116, speech-services-private-link.md]
- `Non-authoritative answer:` and the errors go to the error stream: in a file saved with `>` alone
  they are missing; in a pasted terminal they may come before the run's header (stdout is buffered
  when it is not a console); in PowerShell they may be wrapped as `nslookup : Non-authoritative
  answer:` with `At line:1 char:1` / `+ CategoryInfo ... NativeCommandError` lines. [blog.gl2i.com,
  Git Bash sessions pasted on GitHub (e.g. `$ nslookup ...` / `*** UnKnown can't find x: Non-existent
  domain` / `Server:  UnKnown`)]
- Errors: `*** SERVER can't find NAME: Non-existent domain` (NXDOMAIN), `Server failed` (SERVFAIL),
  `Query refused` (REFUSED), `No response from server` (no answer); the reason stays English when the
  rest is localised (`*** UnKnown 找不到 smartdns: Server failed`, `ne parvient pas à trouver ... :
  Non-existent domain`). `*** No internal type for both IPv4 and IPv6 Addresses (A+AAAA) records
  available for NAME` is an answer without addresses; a query nobody answered ends with
  `*** Request to SERVER timed-out` (zh-CN: `*** 请求 UnKnown 超时`). [pymumu/smartdns#326,
  #1431, XTLS/Xray-core#652, AdguardTeam/AdGuardDNS#945, Liu, DNS on Windows Server 2003, 12.7]
- When the server does not answer the lookup of its own name, nslookup prints `*** Can't find server
  name for address ADDR: Timed out` and `*** Default servers are not available`; if nothing follows,
  the server answered nothing at all. [the BSD nslookup main.c that prints it; console pastes on GitHub]
- Interactive mode starts with `Default Server:  NAME` / `Address:  ADDR`, then `> NAME` per query.
  [MicrosoftDocs/azure-docs articles/dns/dns-web-sites-custom-domain.md, KB 200525]
- Localised labels read here (others are reported as unreadable lines): Server: 服务器, Serveur,
  Servidor; Default Server: Serveur par défaut; Name: 名称, Nom; Non-authoritative answer: 非权威应答,
  Réponse ne faisant pas autorité. Address/Addresses/Aliases are not translated. [holmium/
  dnsforwarder#116, AdguardTeam/AdGuardHome#7229, TechnitiumSoftware/DnsServer#424]

BIND nslookup (bind9-dnsutils; from bin/dig/nslookup.c and runs of the 9.18 binary in the tests):
- `Server:\\t\\tARG` (the server as typed), `Address:\\tADDR#PORT`, a blank line; per address record
  `Name:\\tOWNER` / `Address: ADDR`; per CNAME `ALIAS\\tcanonical name = TARGET.`.
- Without a type option it asks A, then AAAA for the name at the end of the CNAME chain, printing the
  header and `Non-authoritative answer:` for the A query only. An A failure ends the run
  (`** server can't find NAME: NXDOMAIN|SERVFAIL|REFUSED`); an AAAA failure is printed after the A
  answers and names the CNAME target; a name without addresses of either family prints `*** Can't
  find NAME: No answer`. Everything goes to stdout, so an AAAA family that printed nothing had no data.
- A query nobody answered prints `;; communications error to ADDR#PORT: timed out` and
  `;; no servers could be reached` (9.18) or `;; connection timed out; no servers could be reached`
  (older), with no header: its name comes from the command line, which must then be in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdatatype

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
    rcode_from_text,
    server_label,
)
from diagnose.probes.dns.recorded.transcript import Command

NODATA = "no data"
_DEFAULT_TYPES = frozenset({A, AAAA})
_TYPE_OPTIONS = {"type", "ty", "querytype", "query", "qu", "q", "qt"}
_LABEL = re.compile(r"^(?P<label>[^\s:][^:]*?)\s*:(?:\s+(?P<value>\S.*?))?\s*$")
_PS_WRAPPED = re.compile(r"^nslookup(?:\.exe)? : (?P<message>.*)$", re.IGNORECASE)
_PS_NOISE = re.compile(  # the rest of a PowerShell error record around a wrapped line
    r"^(?:At line:\d+ char:\d+|\+ .*|\s+\+ (?:CategoryInfo|FullyQualifiedErrorId)\s*:.*|\s*\+\s*~+)$"
)

_ECHOLESS_OUTPUT = re.compile(
    r"^(?:(?:Default )?Server|Address|Name|Non-authoritative answer)\s*:|^\*\*|^;;", re.IGNORECASE
)

# Windows
_SERVER_LABELS = {"server", "serveur", "servidor", "服务器"}
_DEFAULT_SERVER_LABELS = {"default server", "serveur par défaut"}
_NAME_LABELS = {"name", "nom", "名称"}
_NONAUTH_LABELS = {"non-authoritative answer", "réponse ne faisant pas autorité", "非权威应答"}
_TIMEOUT_NOTE = re.compile(r"^(?:DNS request timed out\.|\s+timeout was \d+ seconds?\.)$")
_SERVER_NOTE = re.compile(
    r"^\*\*\* (?:Can't find server|Can't find address for server|Default servers are not)", re.IGNORECASE
)
# the address may be IPv6 (`fd00::53: Timed out`): it ends at the first colon followed by a blank
_SERVER_UNNAMED = re.compile(
    r"^\*\*\* Can't find server name for address (?P<addr>\S+?)\s*:\s+(?P<reason>[^:]+?)\.?$", re.IGNORECASE
)
_NO_RECORDS = re.compile(r"^\*\*\* No .* records available for (?P<name>\S+?)\.?$")
_REQUEST_TIMED_OUT = re.compile(r"^\*\*\* (?:Request to (?P<server>\S+) timed-out|请求 (?P<server_zh>\S+) 超时)$")
_CANT_FIND = re.compile(r"^\*\*\* (?P<server>\S+) .+? (?P<name>[^\s:]+)\s*:\s*(?P<reason>[A-Za-z][A-Za-z -]*?)\.?$")
_REASONS: dict[str, int | str | None] = {
    "non-existent domain": dns.rcode.NXDOMAIN,
    "server failed": dns.rcode.SERVFAIL,
    "query refused": dns.rcode.REFUSED,
    "format error": dns.rcode.FORMERR,
    "not implemented": dns.rcode.NOTIMP,
    "no response from server": TIMEOUT,
    "timed out": TIMEOUT,
    "no records": NODATA,
}

# BIND
_HEADER_ADDRESS = re.compile(r"^(?P<addr>[0-9A-Fa-f:.%\w]+)#(?P<port>\d+)$")
_CANONICAL = re.compile(r"^(?P<alias>\S+)\s+canonical name = (?P<target>\S+)$")
_SERVER_CANT_FIND = re.compile(r"^\*\* server can't find (?P<name>\S+?): (?P<status>[A-Z]+)$")
_NO_ANSWER = re.compile(r"^\*\*\* Can't find (?P<name>\S+?): No answer$")
_COMM_ERROR = re.compile(r"^;; communications error to (?P<addr>\S+)#(?P<port>\d+): (?P<what>.*)$")
_NO_SERVERS = re.compile(r"^;; (?:connection timed out; )?no servers could be reached$")


@dataclass
class _Settings:
    """Session state: the query types (None: the tool's default), the port and the default server."""

    types: frozenset[dns.rdatatype.RdataType] | None = None
    skip: bool = False  # a query type that carries no addresses (MX, TXT...): its runs are not read
    port: int = 53
    server: str | None = None


@dataclass
class _Query:
    """One query as nslookup printed it, gathered line by line."""

    start: int
    explicit: bool  # started by a command or `> NAME` line (else by a header, in output without prompts)
    name: str | None
    server: str | None
    types: frozenset[dns.rdatatype.RdataType] | None
    port: int
    skip: bool
    header_line: int | None = None
    server_address: str | None = None  # from the header (or, for a run that timed out, the error line)
    server_port: int | None = None
    answer_name: str | None = None
    owner: str | None = None  # BIND: the owner of the next address
    addresses: list[tuple[str, str | None]] = field(default_factory=list)  # (address, owner)
    aliases: list[str] = field(default_factory=list)
    cnames: list[tuple[str, str]] = field(default_factory=list)
    failures: dict[dns.rdatatype.RdataType | None, tuple[int | str | None, str | None, int]] = field(
        default_factory=dict
    )  # per type (None: every type asked) -> (rcode/TIMEOUT/NODATA, name, line)
    unreachable: str | None = None  # Windows: the server did not answer even the lookup of its own name
    a_done: bool = False  # BIND: the A query's answer has been printed

    def has_outcome(self) -> bool:
        return bool(self.answer_name or self.addresses or self.failures or self.cnames)


def _query_types(value: str) -> tuple[frozenset[dns.rdatatype.RdataType] | None, bool]:
    """(types, skip) for a `type=` value: A, AAAA, A+AAAA; any other type is skipped."""
    wanted = {"A": frozenset({A}), "AAAA": frozenset({AAAA}), "A+AAAA": _DEFAULT_TYPES}.get(value.upper())
    return wanted, wanted is None


class _Reader:
    """What the two dialects share: commands, sessions, and when one query ends and the next begins."""

    dialect = ""

    def __init__(self, source: str, command: Command | None) -> None:
        self.source = source
        self.settings = _Settings()
        self.query: _Query | None = None
        self.runs: list[Run] = []
        self.skip_output = False  # the output of an interactive command that is not a query (ls, help...)
        self.expect: str | None = None  # "address" | "default" after a header line
        if command is not None:
            name, server = self._options(command.args)
            if name is not None:
                self._begin(command.line, explicit=True, name=name, server=server)

    def where(self, number: int) -> str:
        return f"{self.source}:{number}"

    def unreadable(self, number: int, text: str) -> InputError:
        hint = ""
        if text.strip() in ("------------", "Got answer:") or text.strip().startswith(("HEADER:", "QUESTIONS:")):
            hint = " (nslookup debug output is not supported: run it without -debug / set debug)"
        return InputError(f"cannot read this {self.dialect} nslookup line: {text.strip()!r}{hint}", self.where(number))

    def _options(self, args: list[str]) -> tuple[str | None, str | None]:
        """Apply `-type=A`, `-port=N`... and return the (name, server) a command line names."""
        positional = []
        for arg in args:
            if arg.startswith("-") and len(arg) > 1:
                self._set(arg[1:])
            else:
                positional.append(arg)
        name = positional[0] if positional and positional[0] != "-" else None
        server = positional[1] if len(positional) > 1 else None
        if server is not None:
            self.settings.server = ip_address(server) or self.settings.server
        return name, server

    def _set(self, option: str) -> None:
        key, _, value = option.partition("=")
        key = key.lower()
        if key in _TYPE_OPTIONS and value:
            self.settings.types, self.settings.skip = _query_types(value)
        elif key in ("port", "po") and value.isdigit():
            self.settings.port = int(value)

    def _begin(self, line: int, explicit: bool, name: str | None = None, server: str | None = None) -> None:
        self._end()
        settings = self.settings
        self.query = _Query(line, explicit, name, server, settings.types, settings.port, settings.skip)
        self.expect = None

    def _end(self) -> None:
        if self.query is not None:
            query, self.query = self.query, None
            if not query.skip and (run := self.finish_query(query)) is not None:
                self.runs.append(run)

    def _interactive(self, number: int, text: str) -> None:
        """A line typed at nslookup's `>` prompt."""
        words = text.split()
        self.skip_output = False
        if not words:
            return
        verb = words[0].lower()
        if verb == "exit":
            self._end()
        elif verb == "set" and len(words) > 1:
            self._end()
            self._set(words[1])
        elif verb in ("server", "lserver") and len(words) > 1:
            self._end()
            self.settings.server = ip_address(words[1])
        elif verb in ("ls", "finger", "view", "root", "help", "?"):
            self._end()
            self.skip_output = True
        else:
            self._begin(number, explicit=True, name=words[0], server=words[1] if len(words) > 1 else None)

    def feed(self, number: int, line: str) -> None:
        if not line.strip():
            self.blank()
            return
        if m := _PS_WRAPPED.match(line):  # nslookup's error output, as Windows PowerShell shows it
            line = m.group("message")
            if not line.strip():
                return
        elif _PS_NOISE.match(line):
            return
        if line.startswith(">"):
            typed = line.lstrip("> \t")
            if not _ECHOLESS_OUTPUT.match(typed):
                self._interactive(number, typed.strip())
                return
            line = typed  # prompts with the output after them: commands piped in, not typed at a terminal
        if self.skip_output or (self.query is not None and self.query.skip):
            return
        self.line(number, line)

    def blank(self) -> None:
        pass

    def line(self, number: int, text: str) -> None:
        raise NotImplementedError

    def finish_query(self, query: _Query) -> Run | None:
        raise NotImplementedError

    def finish(self) -> list[Run]:
        self._end()
        return self.runs

    # -- shared pieces of finishing a query
    def server_of(self, query: _Query) -> str:
        """The server on the run's `Address:` line, else the one its command or the session named."""
        if query.server_address is not None:
            return server_label(query.server_address, query.server_port or query.port)
        for named in (query.server, self.settings.server):
            if named is not None and (address := ip_address(named)) is not None:
                return server_label(address, query.port)
        raise InputError(
            "cannot tell which server answered this nslookup run (no 'Address:' line after "
            "'Server:', and no server address on a command line)",
            self.where(query.start),
        )

    def question(self, query: _Query, candidates: list[str | None]) -> dns.name.Name | None:
        """The name asked: the first known of `candidates`; None for a reverse lookup (an address)."""
        text = next((c for c in candidates if c), None)
        if text is None:
            raise InputError(
                "cannot tell which name this nslookup run asked for (keep the command line, "
                "e.g. `C:\\>nslookup NAME SERVER`, in the file)",
                self.where(query.start),
            )
        if ip_address(text) is not None:
            return None
        return dns_name(text, self.where(query.start))


class _Windows(_Reader):
    dialect = "Windows"

    def __init__(self, source: str, command: Command | None) -> None:
        self.context: str | None = None  # "addresses" | "aliases": what an indented line continues
        self.pending: list[tuple[int, tuple]] = []  # error output seen before its run's header
        super().__init__(source, command)

    def blank(self) -> None:
        self.context = None

    def _begin(self, line: int, explicit: bool, name: str | None = None, server: str | None = None) -> None:
        super()._begin(line, explicit, name, server)
        self.context = None

    def line(self, number: int, text: str) -> None:
        if _TIMEOUT_NOTE.match(text):
            self.context = None
            return  # the notes of a retry; a query nobody answered ends with `*** Request to ... timed-out`
        if self.context and text[0] in " \t":
            self._continuation(number, text.strip())
            return
        self.context = None
        if text.startswith("***"):
            self._stars(number, text)
        elif m := _LABEL.match(text):
            self._label(number, " ".join(m.group("label").lower().split()), m.group("value") or "", text)
        else:
            raise self.unreadable(number, text)

    def _stars(self, number: int, text: str) -> None:
        if (m := _SERVER_UNNAMED.match(text)) and _REASONS.get(m.group("reason").lower(), 0) is TIMEOUT:
            self._error(number, ("unreachable", m.group("addr")))  # if no header follows: nothing answered
            return
        if _SERVER_NOTE.match(text):
            return  # about the server's own name, not the question
        if m := _NO_RECORDS.match(text):
            self._error(number, (NODATA, m.group("name")))
        elif _REQUEST_TIMED_OUT.match(text):
            self._error(number, (TIMEOUT, None))
        elif m := _CANT_FIND.match(text):
            reason = m.group("reason").strip().lower()
            if reason not in _REASONS:
                raise InputError(f"unknown nslookup error {m.group('reason')!r}", self.where(number))
            self._error(number, (_REASONS[reason], m.group("name")))
        else:
            raise self.unreadable(number, text)

    def _error(self, number: int, event: tuple) -> None:
        """Error output: it belongs to the run in progress, or (printed before its header) to the next."""
        query = self.query
        if query is None or (not query.explicit and query.has_outcome()):
            self.pending.append((number, event))
        else:
            self._apply(query, number, event)

    def _apply(self, query: _Query, number: int, event: tuple) -> None:
        kind, name = event
        if kind == "unreachable":
            query.unreachable = ip_address(name) or ""
        else:
            query.failures.setdefault(None, (kind, name, number))

    def _label(self, number: int, label: str, value: str, text: str) -> None:
        query = self.query
        if label in _DEFAULT_SERVER_LABELS:
            self._end()
            self.expect = "default"
        elif label in _SERVER_LABELS:
            if query is None or query.header_line is not None or (not query.explicit and query.has_outcome()):
                self._begin(number, explicit=False)  # output without prompts: each header starts a run
                query = self.query
            assert query is not None
            query.header_line = number
            self.expect = "address"
            for pending_number, event in self.pending:
                self._apply(query, pending_number, event)
            self.pending.clear()
        elif label in _NONAUTH_LABELS and not value:
            return
        elif label == "address" and self.expect in ("address", "default"):
            address = ip_address(value)
            if address is None:
                raise InputError(f"not an IP address: {value!r}", self.where(number))
            if self.expect == "default":
                self.settings.server = address
            elif query is not None:
                query.server_address = address
            self.expect = None
        elif label in _NAME_LABELS and value:
            if query is None or query.header_line is None:
                raise InputError(
                    f"an nslookup answer without its 'Server:' and 'Address:' lines: {text.strip()!r}",
                    self.where(number),
                )
            if query.answer_name is not None:
                raise InputError("a second 'Name:' line in one nslookup answer", self.where(number))
            query.answer_name = value
        elif label in ("address", "addresses") and value and query is not None and query.answer_name:
            self._address(number, value)
            self.context = "addresses"
        elif label == "aliases" and value and query is not None and query.answer_name:
            query.aliases.append(value)
            self.context = "aliases"
        else:
            raise self.unreadable(number, text)

    def _address(self, number: int, value: str) -> None:
        address = ip_address(value)
        if address is None:
            raise InputError(f"not an IP address: {value!r}", self.where(number))
        assert self.query is not None
        self.query.addresses.append((address, None))

    def _continuation(self, number: int, value: str) -> None:
        assert self.query is not None
        if self.context == "addresses":
            self._address(number, value)
        else:
            self.query.aliases.append(value)

    def finish(self) -> list[Run]:
        if self.pending:
            number, _event = self.pending[0]
            raise InputError(
                "an nslookup error with no 'Server:' header before or after it (file cut short?)", self.where(number)
            )
        return super().finish()

    def finish_query(self, query: _Query) -> Run | None:
        if not query.has_outcome() and query.header_line is None and query.unreachable is not None:
            # `*** Can't find server name for address ADDR: Timed out`, `*** Default servers are not
            # available`, and nothing more: the server never answered
            query.failures[None] = (TIMEOUT, None, query.start)
            query.server_address = query.unreachable or None
        if not query.has_outcome():
            if not query.explicit and query.header_line is None:
                return None
            raise InputError(
                "this nslookup run has neither an answer nor an error: the file is cut short, or "
                "nslookup's error output was not saved (save it with `nslookup NAME SERVER > FILE 2>&1`)",
                self.where(query.header_line or query.start),
            )
        failure = query.failures.get(None)
        qname = self.question(
            query,
            [
                query.aliases[0] if query.aliases else None,
                query.answer_name,
                failure[1] if failure else None,
                query.name,
            ],
        )
        if qname is None:
            return None
        where = self.where(query.start)
        run = Run(qname, self.server_of(query), query.start)
        if query.aliases:
            run.chain = [dns_name(n, where) for n in [*query.aliases[1:], query.answer_name] if n]
        asked = set(query.types or _DEFAULT_TYPES) | {family(a) for a, _ in query.addresses}
        for rdtype in sorted(asked):
            addresses = [a for a, _ in query.addresses if family(a) == rdtype]
            if addresses:
                run.outcomes[rdtype] = Outcome(0, addresses)
            elif failure is not None:
                kind = failure[0]
                run.outcomes[rdtype] = Outcome(0 if kind == NODATA else kind)  # type: ignore[arg-type]
            elif query.answer_name and (len(asked) == 1 or not query.addresses):
                run.outcomes[rdtype] = Outcome(0)  # `Name:` alone: the server answered without addresses
        return run


class _Bind(_Reader):
    dialect = "BIND"

    def __init__(self, source: str, command: Command | None) -> None:
        self.unanswered: tuple[str, int, int] | None = None  # `;; communications error to ADDR#PORT`: its line
        super().__init__(source, command)

    def line(self, number: int, text: str) -> None:
        if m := _COMM_ERROR.match(text):
            address = ip_address(m.group("addr"))
            if address is not None and self.unanswered is None:
                self.unanswered = (address, int(m.group("port")), number)
        elif _NO_SERVERS.match(text):
            self._failure(number, TIMEOUT, None, timeout=True)
        elif text.startswith(";;"):
            return  # other diagnostics: `;; Got SERVFAIL reply from ...`, `;; Truncated, retrying in TCP mode.`
        elif m := _SERVER_CANT_FIND.match(text):
            self._failure(number, rcode_from_text(m.group("status"), self.where(number)), m.group("name"))
        elif m := _NO_ANSWER.match(text):
            self._failure(number, NODATA, m.group("name"))
        elif m := _CANONICAL.match(text):
            query = self._answer_line(number, text)
            query.cnames.append((m.group("alias"), m.group("target")))
            query.a_done = True
        elif m := _LABEL.match(text):
            self._label(number, " ".join(m.group("label").lower().split()), m.group("value") or "", text)
        else:
            raise self.unreadable(number, text)

    def _answer_line(self, number: int, text: str) -> _Query:
        if self.query is None or self.query.header_line is None:
            raise InputError(
                f"an nslookup answer without its 'Server:' and 'Address:' lines: {text.strip()!r}", self.where(number)
            )
        return self.query

    def _label(self, number: int, label: str, value: str, text: str) -> None:
        query = self.query
        if label == "default server":
            self._end()
            self.expect = "default"
        elif label == "server" and value:
            if query is None or query.header_line is not None or (not query.explicit and query.has_outcome()):
                self._begin(number, explicit=False)
                query = self.query
            assert query is not None
            query.header_line = number
            self.expect = "address"
            self.unanswered = None  # a retry that timed out, then an answer
        elif label == "address" and self.expect in ("address", "default"):
            m = _HEADER_ADDRESS.match(value)
            address = ip_address(m.group("addr")) if m else None
            if m is None or address is None:
                raise InputError(f"not an ADDRESS#PORT: {value!r}", self.where(number))
            if self.expect == "default":
                self.settings.server = address
            elif query is not None:
                query.server_address, query.server_port = address, int(m.group("port"))
            self.expect = None
        elif label == "non-authoritative answer" and not value:
            self._answer_line(number, text).a_done = True
        elif label == "name" and value:
            self._answer_line(number, text).owner = value
        elif label == "address" and value and query is not None and query.owner is not None:
            address = ip_address(value)
            if address is None:
                raise InputError(f"not an IP address: {value!r}", self.where(number))
            query.addresses.append((address, query.owner))
            query.a_done = True  # an IPv6 address means the A query is over (without addresses)
        else:
            raise self.unreadable(number, text)

    def _failure(self, number: int, kind: int | str | None, name: str | None, timeout: bool = False) -> None:
        query = self.query
        if (
            timeout
            and query is not None
            and query.header_line is not None
            and not (query.types is None and not query.failures)
        ):
            query = None  # the server answered this run (its header says so) and asks nothing more
        unanswered, self.unanswered = self.unanswered, None
        if query is None:
            self._begin(unanswered[2] if timeout and unanswered else number, explicit=False)
            query = self.query
        assert query is not None
        if timeout and query.header_line is None and unanswered is not None:
            query.server_address, query.server_port = unanswered[:2]
        if query.types is not None:
            rdtype = next(iter(query.types)) if len(query.types) == 1 else None
        elif timeout:
            rdtype = AAAA if query.header_line is not None else A  # the header comes with the A answer
        else:
            rdtype = AAAA if query.a_done else A
        if kind == NODATA and query.types is None:
            rdtype = None  # `*** Can't find NAME: No answer`: neither family has addresses
        query.failures.setdefault(rdtype, (kind, name, number))

    def finish_query(self, query: _Query) -> Run | None:
        if not (query.header_line or query.has_outcome()):
            if query.explicit:
                raise InputError("this nslookup command printed nothing (file cut short?)", self.where(query.start))
            return None
        failures = list(query.failures.values())
        qname = self.question(
            query,
            [
                query.cnames[0][0] if query.cnames else None,
                query.addresses[0][1] if query.addresses else None,
                query.name,
                failures[0][1] if failures else None,
            ],
        )
        if qname is None:
            return None
        where = self.where(query.start)
        run = Run(qname, self.server_of(query), query.start)
        run.chain = chain_from(qname, [(dns_name(a, where), dns_name(t, where)) for a, t in query.cnames])
        asked = sorted(query.types or _DEFAULT_TYPES)
        everything = query.failures.get(None)
        for rdtype in asked:
            addresses = [a for a, _ in query.addresses if family(a) == rdtype]
            failure = query.failures.get(rdtype) or everything
            if addresses:
                run.outcomes[rdtype] = Outcome(0, addresses)
            elif failure is not None:
                run.outcomes[rdtype] = Outcome(0 if failure[0] == NODATA else failure[0])  # type: ignore[arg-type]
            elif not (query.explicit and query.types is None):
                continue  # without its command line, a run may have asked one type only (-type=A)
            elif rdtype == A and query.a_done:
                run.outcomes[A] = Outcome(0)  # the A answer was printed, without addresses
            elif rdtype == AAAA and A not in query.failures and (query.a_done or A in run.outcomes):
                run.outcomes[AAAA] = Outcome(0)  # BIND prints an AAAA failure; silence means no data
        if not run.outcomes or (query.explicit and query.types is None and A not in run.outcomes):
            raise InputError(
                "this nslookup run has a header but no answer (file cut short?)",
                self.where(query.header_line or query.start),
            )
        return run


def parse(lines: list[tuple[int, str]], source: str, command: Command | None, bind: bool) -> list[Run]:
    reader: _Reader = _Bind(source, command) if bind else _Windows(source, command)
    for number, line in lines:
        reader.feed(number, line)
    return reader.finish()


_BIND_HINT = re.compile(
    "|".join(
        re.sub(r"\(\?P<\w+>", "(?:", f"(?:{p.pattern})")
        for p in (
            _SERVER_CANT_FIND,
            _CANONICAL,
            _NO_SERVERS,
            _COMM_ERROR,
            _NO_ANSWER,
            re.compile(r"^Address:\s+\S+#\d+$"),
            re.compile(r"^;; Got \w+ reply from"),
        )
    )
)


def is_bind(lines: list[tuple[int, str]]) -> bool:
    """BIND's nslookup rather than Windows': its header shows ADDR#PORT, its errors and CNAMEs their own way."""
    return any(_BIND_HINT.match(line) for _, line in lines)


_NSLOOKUP_HINT = re.compile(
    r"^(?:(?:Default )?Server|Address(?:es)?|Name|Aliases|Non-authoritative answer|"
    r"服务器|名称|非权威应答|Serveur|Servidor|Nom)\s*:|^\*\*\*? |^DNS request timed out\.$"
)


def looks_like(line: str) -> bool:
    """A line only nslookup prints (either dialect)."""
    return bool(_NSLOOKUP_HINT.match(line) or _BIND_HINT.match(line))
