"""Pseudonymise an evidence bundle so that it, and the reports rendered from it, can go to support.

What is replaced, everywhere (structured fields and free text: subjects, attributes, provenance,
profile, answers, excerpts, probe reasons and notes, the description, file paths):

* IP addresses, IPv4 and IPv6, also as `ip:port`, `[v6]:port` and `::ffff:v4`. The token keeps the
  address class: `ip-int-N` (RFC 1918, CGNAT, IPv6 unique local), `ip-ext-N` (everything routable,
  including the documentation ranges that stand for public addresses in examples), `ip-lo-N`
  (loopback), `ip-ll-N` (link-local), `ip-mc-N` (multicast), `ip-any-N` (unspecified), `ip-bc-N`
  (broadcast); IPv6 tokens start `ip6-`.
* Host names and FQDNs, label by label: the host label becomes `host-N`, every domain label
  `dom-N`; a generic or special-use top-level label (`com`, `local`, `lan`, ...) stays, so
  `cas01.contoso.local` -> `host-2.dom-1.local` and `mail.contoso.com` -> `host-1.dom-1.com`.
* Domains: NetBIOS domains and domain labels share the `dom-N` map (`CONTOSO\\jdoe` -> `DOM-1\\user-1`).
* User names: `DOMAIN\\user`, `user@domain`, `Users\\NAME` / `/home/NAME` path components and user
  attributes (`username`, `client_username`, ...) -> `user-N`.
* TMG rule names (`rule` attributes, `rule:NAME` subjects) -> `rule-N`, wherever the name appears.
* File and folder names of the inputs (the paths given, and every fact's source that is a path),
  component by component: a folder -> `dir-N`, a file's name before its extensions -> `file-N`
  (`/cases/CASE-4711/site7/ISALOG_FWS.w3c` -> `/cases/DIR-1/dir-2/file-1.w3c`); a case number or
  site code in a path is gone from provenance, reasons, excerpts and progress lines alike. Generic
  folders (`tmp`, `logs`, `Program Files`, ...) stay.

Consistency: one `Redactor` holds one table per class; the same input (compared case-insensitively,
IPv6 in canonical form) always gets the same token, different inputs different tokens. Tokens are
numbered in order of first appearance in the bundle, so they carry nothing of the original; the
tables live only in memory and are never written, so the tokens cannot be reversed without them.
Equality is kept: a published name equal to the certificate FQDN stays equal to it, a single-label
host stays the host label of its FQDN, and rule joins and `matches_internal`/`leg` (computed by the
probes before redaction) give the same results.

Kept as they are: kinds, counts, states, booleans, service short names, protocols, Exchange paths,
result codes, teardown labels, times, check and probe names, and everything the rulebook says
(causes, remediation, public references), which does not come from the bundle.

Single words learnt from structured fields (a host `CAS01`, a domain label `contoso`, a user) are
also replaced where they stand alone in free text (`cas01-services.csv`), unless they are common
words of the domain (`owa`, `mail`, `exchange`, ...), which are never identifying on their own.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from diagnose.facts import EvidenceBundle, Fact, ProbeRun, Provenance, Value


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# top-level labels kept verbatim: generic, special-use or internal-only, identifying no one
KEEP_TLDS = _words("""
    com net org edu gov mil int info biz local localdomain lan internal intranet corp home arpa test example invalid
    localhost
""")
# further top-level labels that mark a dotted word in free text as a host name
TLD_HINTS = KEEP_TLDS | _words("io co eu asia mobi aero coop")
# two-letter labels that end file names or are English words, not country domains, in free text
NOT_CC = _words("""
    py md sh ps pl cs rs js gz xz bz so db go ts vb el hs ml cc hh hp rb pm ui qs
    of to in is it on at by as be do go if me my no so up us we an am or he
""")
# words that stand alone in reports and evidence without identifying anyone
COMMON_WORDS = (
    _words("""
    owa ecp ews oab rpc mapi autodiscover activesync outlook exchange microsoft windows mail webmail smtp imap pop
    www web remote cas mbx hub edge dc ad int ext tmg isa forefront gateway firewall proxy server servers client
    clients host hosts dns tls http https tcp udp log logs capture trace status failed running stopped service
    services default public guest system network local localhost test example internal external corp lan domain
    user users admin administrator anonymous root unknown none null true false site portal login logon auth owner
    ip ip6 dom lo ll mc any bc
""")
    | KEEP_TLDS
)  # the last line: parts of our own tokens
# user values that identify no one
ANONYMOUS_USERS = frozenset({"", "-", "anonymous", "unknown", "none", "null", "n/a"})
WELL_KNOWN_DOMAINS = frozenset(
    {
        "nt authority",
        "authority",
        "builtin",
        "nt service",
        "iis apppool",
        "apppool",
        "font driver host",
        "window manager",
        "workgroup",
    }
)

# fact attributes that hold names, per kind and for every kind
NAME_ATTRS: Mapping[str, frozenset[str]] = {
    "dns.resolution": frozenset({"name", "cname_chain"}),
    "dns.consistency": frozenset({"mismatched", "unresolved"}),
    "tls.certificate": frozenset({"sni", "subject_cn", "san_dns", "unmatched_names"}),
}
ANY_KIND_NAME_ATTRS = frozenset(
    {
        "host",
        "hostname",
        "host_name",
        "fqdn",
        "computer",
        "computers",
        "computer_name",
        "machine",
        "server_name",
        "sni",
        "internal_name",
        "certificate_fqdn",
        "published_names",
        "published_name",
        "dest_host",
        "destination_host",
        "services_host",
    }
)
NAME_SUBJECT_KINDS = frozenset({"dns.resolution"})
USER_ATTRS = frozenset(
    {
        "user",
        "username",
        "user_name",
        "client_username",
        "client_user",
        "cs_username",
        "cs-username",
        "account",
        "logon_user",
        "authenticated_user",
        "users",
        "usernames",
    }
)
# closed vocabularies: never touched
SAFE_ATTRS = frozenset(
    {
        "scope",
        "role",
        "outcome",
        "state",
        "start_type",
        "expected_start",
        "backend",
        "basis",
        "criticality",
        "leg",
        "teardown",
        "conn_state",
        "history",
        "first_fin_by",
        "first_reset_by",
        "fin_by_role",
        "reset_by_role",
        "protocol",
        "protocols",
        "published",
        "published_affected",
        "exchange_version",
        "versions",
        "action",
        "handshake",
        "range_source",
        "time_wait_delay_source",
        "first_time",
        "last_time",
        "not_after",
    }
)
RULE_ATTRS = frozenset({"rule", "rules", "rule_name", "rule_names"})
# path components that identify no one: kept as they are
KEEP_PATH_PARTS = (
    frozenset(
        {
            "",
            ".",
            "..",
            "~",
            "tmp",
            "temp",
            "var",
            "log",
            "logs",
            "opt",
            "srv",
            "mnt",
            "media",
            "data",
            "home",
            "users",
            "desktop",
            "downloads",
            "documents",
            "program files",
            "program files (x86)",
            "programdata",
            "microsoft",
            "microsoft forefront threat management gateway",
            "isa server",
            "microsoft isa server",
            "windows",
            "system32",
            "drivers",
            "etc",
            "appdata",
            "documents and settings",
            "inetpub",
            "logfiles",
            "isalogs",
        }
    )
    | COMMON_WORDS
)
PROFILE_NAME_FIELDS = frozenset({"published_names", "internal_name", "certificate_fqdn"})
PROFILE_SAFE_FIELDS = frozenset({"published", "exchange_version"})

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\d|\.\d)"
_IPV6 = r"(?<![\w.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}(?!\d|\.\d)|[0-9A-Fa-f]{1,4})?(?:%[\w.-]+)?"
_TLD = (
    "(?:(?i:"
    + "|".join(sorted(TLD_HINTS, key=len, reverse=True))
    + ")|(?!(?:"
    + "|".join(sorted(NOT_CC))
    + r")(?![A-Za-z0-9-]))[a-z]{2})"
)
_FQDN = rf"(?<![A-Za-z0-9.@_-])\*?\.?(?:{_LABEL}\.)+{_TLD}(?![A-Za-z0-9_-])"
_EMAIL = rf"(?<![\w.%+-])(?P<local>[A-Za-z0-9._%+-]*[A-Za-z0-9_%+-])@(?P<maildom>(?:{_LABEL}\.)+{_LABEL})"
_DOMUSER = (
    r"(?<![\w\\/:.$-])(?P<netbios>[A-Za-z][A-Za-z0-9-]{0,14}|[A-Za-z][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)+)"
    r"\\(?P<account>[A-Za-z0-9._$-]*[A-Za-z0-9_$-])(?![\w\\$-])"
)
_WINPATH = r"(?<![\w])[A-Za-z]:\\[^\t\r\n\"'<>|*?]*"
_UNC = r"\\\\(?P<unchost>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?P<uncrest>(?:\\[^\t\r\n\"'<>|*?]*)?)"
_HOMEDIR = (
    r"(?<=[\\/])(?P<homes>(?i:users|home|documents and settings))[\\/]"
    r"(?P<homeuser>[^\\/\t\r\n\"'<>|*?:]+)"
)

_COMPUTER = re.compile(r"(?=[A-Z0-9-]*\d)[A-Z][A-Z0-9-]{1,14}")
_NOT_COMPUTER = re.compile(
    r"(?i)W3SVC\d*|X64|X86|WIN(?:32|64)|UTF-?(?:8|16)|IPV[46]|TLS\d*|SSL\d|MD5|SHA\d+|RC4|"
    r"AES\d+|DES3|MSIE\d*|IE\d+|NT\d*|HTTP-?\d?"
)
_MAYBE_IDENTIFYING = re.compile(r"[.:\\@/]")  # every address, name, path or user shape has one of these
_RUNS = re.compile(r"[a-z0-9]+")
_TOKEN = re.compile(r"(?i)(?:host|dom|user|rule|dir|file)-\d+")
_PATH_SEP = re.compile(r"[\\/!]")  # `!`: a zip archive's member (`logs.zip!ISALOG.w3c`)
_SOURCES = re.compile(r", | <-> ")
_SHORT_PART = re.compile(r"(?<=[\\/!])[^\\/!\s:.]{1,2}(?=[\\/!.:]|$)")  # a path component of 1-2 characters
ADDRESS_TOKEN = re.compile(r"ip6?-(?:int|ext|lo|ll|mc|any|bc)-\d+")


def is_address_token(value: str) -> bool:
    """True for an address token of a redacted bundle (so a redacted profile still loads)."""
    return ADDRESS_TOKEN.fullmatch(value) is not None


def _address_class(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if ip.is_loopback:
        return "lo"
    if ip.is_link_local:
        return "ll"
    if ip.is_unspecified:
        return "any"
    if ip.is_multicast:
        return "mc"
    if isinstance(ip, ipaddress.IPv4Address):
        if ip == ipaddress.IPv4Address("255.255.255.255"):
            return "bc"
        internal = any(ip in net for net in _INTERNAL_V4)
    else:
        internal = ip in _INTERNAL_V6
    return "int" if internal else "ext"


_INTERNAL_V4 = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
_INTERNAL_V6 = ipaddress.IPv6Network("fc00::/7")


def _cased(original: str, token: str) -> str:
    return token.upper() if original.isupper() else token


@dataclass
class _Table:
    """One class of pseudonyms: original (normalised) -> token, numbered in order of first appearance."""

    prefix: str
    tokens: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str:
        token = self.tokens.get(key)
        if token is None:
            token = self.tokens[key] = f"{self.prefix}-{len(self.tokens) + 1}"
        return token


class Redactor:
    """Consistent pseudonyms for one bundle. Use one instance per bundle; see the module docstring."""

    def __init__(self) -> None:
        self._tables: dict[str, _Table] = {}
        self._words: dict[str, str] = {}  # lowercased single word -> class ("host" | "dom" | "user")
        self._learning = False
        self._addresses: dict[str, str] = {}
        self._known: re.Pattern[str] | None = None
        self._known_size = 0
        self._odd_heads: frozenset[str] = frozenset()  # the first letter-digit run of each learnt odd word
        self._short_parts: dict[str, str] = {}  # path components of 1-2 characters -> "dir" | "file"
        self._outer = _compile(outer=True)
        self._inner = _compile(outer=False)

    # ---------------------------------------------------------------- one value of a known class

    def address(self, value: str) -> str:
        """Token for one IP address (IPv4 or IPv6, optional %zone); other text is returned as it is."""
        token = self._addresses.get(value)
        if token is None:
            token = self._addresses[value] = self._new_address(value)
        return token

    def _new_address(self, value: str) -> str:
        addr, _, zone = value.partition("%")
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return value
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return "::ffff:" + self.address(str(ip.ipv4_mapped))
        family = "ip" if ip.version == 4 else "ip6"
        token = self._table(f"{family}-{_address_class(ip)}").get(str(ip))
        return token + (f"%{zone}" if zone else "")

    def name(self, value: str) -> str:
        """Token for a host name or FQDN (`*.` wildcards, trailing dots and `:port` kept); IPs as `address`."""
        if not value or _TOKEN.fullmatch(value) or is_address_token(value):
            return value
        host, sep, port = value.rpartition(":")
        if sep and port.isdigit() and host and ":" not in host.strip("[]"):
            return self.name(host) + sep + port
        bare = value.strip("[]")
        try:
            ipaddress.ip_address(bare.partition("%")[0])
        except ValueError:
            pass
        else:
            return value.replace(bare, self.address(bare))
        if not re.fullmatch(r"(?:\*\.)?\.?[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?", value):
            return self.text(value)
        return self._fqdn(value)

    def user(self, value: str) -> str:
        """Token for a user: `DOMAIN\\user`, `user@domain` or a bare account name."""
        if value.strip().lower() in ANONYMOUS_USERS or _TOKEN.fullmatch(value):
            return value
        domain, sep, account = value.rpartition("\\")
        if sep:
            if domain.lower() in WELL_KNOWN_DOMAINS:
                return value
            return self._netbios(domain) + "\\" + self._account(account)
        local, sep, maildomain = value.rpartition("@")
        if sep and local:
            return self._account(local) + "@" + self._domain_name(maildomain)
        return self._account(value)

    def rule(self, value: str) -> str:
        """Token for a TMG rule name; the whole name is also replaced wherever it appears in text."""
        return self._label("rule", value) if value.strip() and value != "-" else value

    def paths(self, values: Iterable[str]) -> None:
        """Learn the folder and file names of these paths, to be replaced wherever they appear."""
        for value in values:
            parts = [p for p in _PATH_SEP.split(value) if p]
            for n, part in enumerate(parts):
                is_file = n == len(parts) - 1 or "." in part.strip(".")
                if is_file:
                    part = part.split(".", 1)[0]  # the name before its extensions: `trace` of `trace.pcap.gz`
                if (
                    part.lower() not in KEEP_PATH_PARTS
                    and not part.endswith(":")
                    and not part.isdigit()
                    and not _TOKEN.fullmatch(part)
                ):
                    self._label("file" if is_file else "dir", part)
                    if len(part) < 3:
                        self._short_parts.setdefault(part.lower(), "file" if is_file else "dir")

    # ---------------------------------------------------------------- free text

    def text(self, value: str) -> str:
        """Free text with every address, name and user in it replaced."""
        if not value:
            return value
        out = self._outer.sub(self._replace, value) if _MAYBE_IDENTIFYING.search(value) else value
        if self._short_parts and _PATH_SEP.search(out):
            out = _SHORT_PART.sub(self._short_part, out)
        known = self._known_words()
        if known is None:
            return out
        runs = _RUNS.findall(out.lower())  # a learnt word, odd or not, stands in text as (or from) one of these
        if self._words.keys().isdisjoint(runs) and self._odd_heads.isdisjoint(runs) and "" not in self._odd_heads:
            return out
        return known.sub(self._word, out)

    def _short_part(self, m: re.Match[str]) -> str:
        """A path component too short to be replaced wherever it stands alone (`L7`, `NY`): replaced
        only as a component of a path."""
        cls = self._short_parts.get(m.group().lower())
        return m.group() if cls is None else self._label(cls, m.group())

    # ---------------------------------------------------------------- the bundle

    def bundle(self, bundle: EvidenceBundle) -> EvidenceBundle:
        """A redacted copy of `bundle`. Every value is seen once to learn the names, then rewritten."""
        self._learning = True
        try:
            self._rewrite(bundle)
        finally:
            self._learning = False
        return self._rewrite(bundle)

    def _rewrite(self, b: EvidenceBundle) -> EvidenceBundle:
        return replace(
            b,
            facts=tuple(self.fact(f) for f in b.facts),
            probes=tuple(self.probe_run(p) for p in b.probes),
            profile=self.profile(b.profile),
            answers={k: self.text(v) for k, v in b.answers.items()},
            excerpts={self.text(k): self.excerpt(v) for k, v in b.excerpts.items()},
            description=self.text(b.description),
            case_folder=self._data(b.case_folder),
        )

    def _data(self, value: Any) -> Any:
        """Free text in nested lists and mappings (the case folder's files and reasons)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._data(v) for v in value]
        return value

    def excerpt(self, value: str) -> str:
        """Raw evidence. In a tab-separated log record a whole field shaped like a Windows computer name
        (`TMG01`, `CAS-02`: capitals and digits) is a host name too: the TMG logs' computer column."""
        if value.count("\t") < 4:
            return self.text(value)
        return "\t".join(
            self._label("host", f) if _COMPUTER.fullmatch(f) and not _NOT_COMPUTER.fullmatch(f) else self.text(f)
            for f in value.split("\t")
        )

    def fact(self, fact: Fact) -> Fact:
        names = NAME_ATTRS.get(fact.kind, frozenset()) | ANY_KIND_NAME_ATTRS
        attrs: dict[str, Value] = {}
        for key, value in fact.attrs.items():
            if key in SAFE_ATTRS or not isinstance(value, (str, tuple)):
                attrs[key] = value
                continue
            redact: Callable[[str], str] = (
                self.name
                if key in names
                else self.user
                if key in USER_ATTRS
                else self.rule
                if key in RULE_ATTRS
                else self.text
            )
            attrs[key] = tuple(redact(v) for v in value) if isinstance(value, tuple) else redact(value)
        subject = self.name(fact.subject) if fact.kind in NAME_SUBJECT_KINDS else self.text(fact.subject)
        return Fact(fact.kind, subject, attrs, self.provenance(fact.provenance))

    def provenance(self, p: Provenance) -> Provenance:
        if self._learning and p.source:  # a file's path, or names of files (`a.pcap <-> b.w3c, c.w3c`)
            self.paths(
                s
                for s in _SOURCES.split(p.source)
                if _PATH_SEP.search(s) or ("." in s and not self._outer.fullmatch(s))
            )
        return replace(p, source=self._opt(p.source), location=self._opt(p.location))

    def probe_run(self, run: ProbeRun) -> ProbeRun:
        return replace(run, reason=self.text(run.reason), notes=tuple(self.text(n) for n in run.notes))

    def profile(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in profile.items():
            if key in PROFILE_SAFE_FIELDS:
                out[key] = value
            else:
                out[key] = self._any(value, self.name if key in PROFILE_NAME_FIELDS else self.text)
        return out

    def _any(self, value: Any, redact: Callable[[str], str]) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, (list, tuple)):
            return [self._any(v, redact) for v in value]
        if isinstance(value, dict):
            return {k: self._any(v, redact) for k, v in value.items()}
        return value

    def _opt(self, value: str | None) -> str | None:
        return None if value is None else self.text(value)

    # ---------------------------------------------------------------- tables

    def _table(self, cls: str) -> _Table:
        table = self._tables.get(cls)
        if table is None:
            table = self._tables[cls] = _Table(cls)
        return table

    def _label(self, cls: str, label: str) -> str:
        if _TOKEN.fullmatch(label):
            return label
        key = label.lower()
        if len(key) >= 3 and key not in COMMON_WORDS and not key.isdigit():
            self._words.setdefault(key, cls)
        return _cased(label, self._table(cls).get(key))

    def _account(self, account: str) -> str:
        return self._label("user", account)

    def _netbios(self, domain: str) -> str:
        if "." in domain:
            return self._domain_name(domain)
        return self._label("dom", domain)

    def _domain_name(self, name: str) -> str:
        """A domain (no host label): every label a domain label, a generic top-level label kept."""
        labels = name.split(".")
        out = [self._label("dom", lab) if lab else lab for lab in labels[:-1]]
        last = labels[-1]
        out.append(last if last.lower() in KEEP_TLDS or not last else self._label("dom", last))
        return ".".join(out)

    def _fqdn(self, value: str) -> str:
        prefix = ""
        if value.startswith("*."):
            prefix, value = "*.", value[2:]
        elif value.startswith("."):
            prefix, value = ".", value[1:]
        suffix = "." if value.endswith(".") else ""
        labels = value.rstrip(".").split(".")
        if len(labels) == 1:
            body = self._label("host", labels[0])
        elif prefix or (len(labels) == 2 and labels[1].lower() in KEEP_TLDS):
            body = self._domain_name(".".join(labels))  # `*.contoso.com`, `contoso.com`: a domain
        else:
            body = self._label("host", labels[0]) + "." + self._domain_name(".".join(labels[1:]))
        return prefix + body + suffix

    # ---------------------------------------------------------------- the text pattern

    def _known_words(self) -> re.Pattern[str] | None:
        """Words learnt from structured fields, replaced where they stand alone (not while learning)."""
        if self._learning or not self._words:
            return None
        if self._known is None or self._known_size != len(self._words):
            # alphanumeric runs are looked up in the table; learnt words with other characters
            # (`john.doe`, `srv-01`) are tried first as literals
            odd = sorted((w for w in self._words if not w.isalnum()), key=len, reverse=True)
            # a word without letters or digits could stand anywhere: the empty run makes every text a candidate
            self._odd_heads = frozenset((_RUNS.findall(w) or [""])[0] for w in odd)
            literal = ("(?<![A-Za-z0-9])(?i:" + "|".join(map(re.escape, odd)) + ")(?![A-Za-z0-9])|") if odd else ""
            self._known = re.compile(literal + "[A-Za-z0-9]+")
            self._known_size = len(self._words)
        return self._known

    def _word(self, m: re.Match[str]) -> str:
        text = m.group(0)
        cls = self._words.get(text.lower())
        return text if cls is None else self._label(cls, text)

    def _sub(self, value: str, outer: bool) -> str:
        return (self._outer if outer else self._inner).sub(self._replace, value)

    def _replace(self, m: re.Match[str]) -> str:
        kind, text = m.lastgroup, m.group(0)
        if kind == "winpath":
            return self._sub(text, outer=False)
        if kind == "unc":
            return "\\\\" + self.name(m.group("unchost")) + self._sub(m.group("uncrest"), outer=False)
        if kind == "email":
            return self._account(m.group("local")) + "@" + self._domain_name(m.group("maildom"))
        if kind == "domuser":
            netbios, account = m.group("netbios"), m.group("account")
            if netbios.lower() in WELL_KNOWN_DOMAINS:
                return text
            return self._netbios(netbios) + "\\" + self._account(account)
        if kind == "ipv4":
            return self.address(text)
        if kind == "ipv6":
            return self._ipv6(m)
        if kind == "fqdn":
            return self._fqdn(text)
        if kind == "home":
            user = m.group("homeuser")
            if user.lower() in ("public", "default", "all users", "default user"):
                return text
            return text[: m.start("homeuser") - m.start()] + self._account(user)
        return text

    def _ipv6(self, m: re.Match[str]) -> str:
        text = m.group(0)
        candidates = [text]
        # "server:ADDR:PORT" subjects: an address after "label:" ending in ":digits" is an address and a port
        before = m.string[max(0, m.start() - 1) : m.start()]
        head, _, tail = text.rpartition(":")
        if before == ":" and tail.isdigit() and head:
            candidates.insert(0, head)
        stripped = text.rstrip(":")
        if stripped != text:
            candidates.append(stripped)
        for candidate in candidates:
            try:
                ipaddress.ip_address(candidate.partition("%")[0])
            except ValueError:
                continue
            return self.address(candidate) + text[len(candidate) :]
        return text


def _compile(outer: bool) -> re.Pattern[str]:
    """The pattern of free text; paths, UNC names and DOMAIN\\user only at the outer level (not inside a path)."""
    parts = []
    if outer:
        parts += [f"(?P<winpath>{_WINPATH})", f"(?P<unc>{_UNC})"]
    parts += [f"(?P<email>{_EMAIL})"]
    if outer:
        parts += [f"(?P<domuser>{_DOMUSER})"]
    parts += [f"(?P<ipv4>{_IPV4})", f"(?P<ipv6>{_IPV6})", f"(?P<fqdn>{_FQDN})", f"(?P<home>{_HOMEDIR})"]
    return re.compile("|".join(parts))


def redact_bundle(bundle: EvidenceBundle, paths: Iterable[str] = ()) -> EvidenceBundle:
    """The bundle with every address, name, user, rule name and input file and folder name pseudonymised
    (a fresh table per bundle); `paths`: the input paths given, learnt first."""
    redactor = Redactor()
    redactor.paths(paths)
    return redactor.bundle(bundle)
