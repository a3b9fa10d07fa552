"""What every recorded-answers reader produces, and the helpers they share.

A reader turns one tool's output into `RecordedAnswer`s: one per question (name and record type) with
the server's answer code (None: the query timed out), the answer records (CNAMEs included) and the
server that answered. The nslookup and Resolve-DnsName readers first gather each run of the tool into
a `Run` (the question, the CNAME chain, and what it said per record type), which `Run.answers` turns
into the same `RecordedAnswer`s the `dig` reader makes.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.IN.A import A as A_RDATA
from dns.rdtypes.IN.AAAA import AAAA as AAAA_RDATA

from diagnose.errors import InputError
from diagnose.probes.netio import canonical_address, endpoint

A, AAAA = dns.rdatatype.A, dns.rdatatype.AAAA
IN = dns.rdataclass.IN
TIMEOUT = None  # the rcode of a query that got no answer
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class RecordedAnswer:
    qname: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    rcode: int | None  # None: the query timed out
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    server: str | None = None
    line: int = 0


@dataclass(eq=False)  # compared and hashed by identity: one object per recorded server
class RecordedServer:
    """The recorded answers of one server, looked up by question."""

    label: str
    path: str
    answers: dict[tuple[dns.name.Name, int], RecordedAnswer] = field(default_factory=dict)

    def lookup(self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> RecordedAnswer | None:
        return self.answers.get((qname, rdtype))

    def response(self, recorded: RecordedAnswer) -> dns.message.Message:
        query = dns.message.make_query(recorded.qname, recorded.rdtype)
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.Rcode.make(recorded.rcode or 0))
        for rrset in recorded.answer:  # through find_rrset, so that the message's index knows them
            response.find_rrset(response.answer, rrset.name, rrset.rdclass, rrset.rdtype, create=True).update(rrset)
        return response


@dataclass
class Outcome:
    """What one run of a tool said about one record type of its question."""

    rcode: int | None  # None: timed out
    addresses: list[str] = field(default_factory=list)


@dataclass
class Run:
    """One question put to one server, as a tool printed it (several record types at once)."""

    qname: dns.name.Name
    server: str
    line: int
    chain: list[dns.name.Name] = field(default_factory=list)  # CNAME targets from the question on
    outcomes: dict[dns.rdatatype.RdataType, Outcome] = field(default_factory=dict)

    def answers(self) -> list[RecordedAnswer]:
        out = []
        for rdtype, outcome in self.outcomes.items():
            records: list[dns.rrset.RRset] = []
            if outcome.rcode is not TIMEOUT:
                owner = self.qname
                for target in self.chain:
                    records.append(dns.rrset.from_rdata(owner, 0, CNAME(IN, dns.rdatatype.CNAME, target)))
                    owner = target
                if outcome.addresses:
                    kind = AAAA_RDATA if rdtype == AAAA else A_RDATA
                    rdatas = [kind(IN, rdtype, address) for address in outcome.addresses]
                    records.append(dns.rrset.from_rdata_list(owner, 0, rdatas))
            out.append(RecordedAnswer(self.qname, rdtype, outcome.rcode, records, self.server, self.line))
        return out


def family(address: str) -> dns.rdatatype.RdataType:
    return AAAA if ":" in address else A


def ip_address(text: str) -> str | None:
    """The address in `text`, canonical (an IPv6 zone index dropped), or None when it is not one."""
    try:
        return canonical_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None


def server_label(host: str, port: int | str = 53) -> str:
    """How a recorded server is named: ADDR:PORT, [V6]:PORT, the address canonical, exactly as the live
    probe names its servers (`netio.endpoint`), so that a recorded and a live answer of one server agree."""
    return str(endpoint(host, int(port)))


# A DNS name is at most 255 octets on the wire; as text, escapes (`\DDD`) and IDN labels make it longer,
# but never past this. dnspython's IDNA step is slow on long strings (a 1.5M-character "name" took
# a minute), so longer text is refused before it is parsed.
MAX_NAME_TEXT = 1024
# No tool prints a line of this length in a recording (nslookup, dig and Resolve-DnsName lines are a few
# hundred characters at most); a longer line is not DNS tool output.
MAX_LINE_CHARS = 64 * 1024


def dns_name(text: str, where: str) -> dns.name.Name:
    text = text.strip()
    if len(text) > MAX_NAME_TEXT:
        raise InputError(f"not a DNS name: {len(text)} characters (a DNS name has at most 255 octets)", where)
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException:
        raise InputError(f"not a DNS name: {text.strip()!r}", where) from None


def chain_from(qname: dns.name.Name, pairs: list[tuple[dns.name.Name, dns.name.Name]]) -> list[dns.name.Name]:
    """The CNAME targets from `qname` on, following (alias, target) pairs in any order."""
    links = dict(pairs)
    chain: list[dns.name.Name] = []
    current = qname
    while current in links and links[current] not in chain and links[current] != qname:
        current = links[current]
        chain.append(current)
    return chain


# The code pages Windows writes a redirect in: cmd.exe the OEM one of the system's locale (437 US, 850
# Western Europe, 852 Central Europe, 857 Turkish, 737 Greek, 866 Cyrillic, 932 Japanese, 936
# Simplified Chinese, 949 Korean, 950 Traditional Chinese), Windows PowerShell's Out-File -Encoding
# Default the ANSI one (1250 to 1254). On a tie the earlier wins.
CODE_PAGES = (
    "cp850",
    "cp437",
    "cp936",
    "cp866",
    "cp932",
    "cp949",
    "cp950",
    "cp852",
    "cp857",
    "cp737",
    "cp1252",
    "cp1251",
    "cp1250",
    "cp1253",
    "cp1254",
)
# Words of localised nslookup and PowerShell output (nslookup.py, powershell.py): each found in a
# decoding is strong evidence for its code page.
LOCALISED_WORDS = (
    "服务器",
    "名称",
    "非权威应答",
    "找不到",
    "请求",
    "超时",
    "défaut",
    "Réponse",
    "autorité",
    "línea",
    "Carácter",
)
_LETTERS = re.compile(r"[^\W\d_]+")
_KANA = ("HIRAGANA", "KATAKANA")  # full-width kana: Japanese (GBK reads Shift-JIS bytes as ideographs)


def _script(ch: str) -> str:
    first = unicodedata.name(ch, "?").split(" ", 1)[0]
    return "CJK" if first.startswith(_KANA) else first


def plausibility(text: str, page: str) -> int:
    """How much `text` (decoded from `page`) reads like the right code page, in bytes: localised words
    count much; a non-ASCII letter counts where its word is plausible (one script; an accented letter
    in a Latin word of mostly plain letters; a non-Latin word without Latin letters) and counts against
    where not; kana once more; a non-ASCII symbol (box drawing, say: OEM bytes read in the wrong page)
    twice against."""

    def size(chars: str) -> int:
        return len(chars.encode(page))

    score = 20 * sum(text.count(word) for word in LOCALISED_WORDS)
    score += sum(size(ch) for ch in text if "\u3040" <= ch <= "\u30ff")
    for word in _LETTERS.findall(text):
        plain = sum(ch.isascii() for ch in word)
        other = size(word) - plain
        if not other:
            continue
        scripts = {_script(ch) for ch in word if not ch.isascii()}
        if len(scripts) == 1:
            latin = scripts == {"LATIN"}
            score += other if (other <= plain if latin else not plain) else -other
        else:
            score -= other
    return score - 2 * sum(size(ch) for ch in text if not ch.isascii() and not ch.isalpha() and not ch.isspace())


SAMPLE_BYTES = 256 * 1024  # what the code page is judged on


def decode(data: bytes, source: str) -> str:
    """Text as Windows and Unix tools save it: UTF-16 with a byte-order mark (Windows PowerShell's `>` and
    Out-File), UTF-8 (with or without a mark), else the code page that reads most plausibly (CODE_PAGES:
    cmd.exe writes the OEM code page of the system's locale, 936 on zh-CN, 850 in Western Europe)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputError(f"bad UTF-16 text (byte {exc.start})", f"{source}@{exc.start}") from None
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise InputError(
            f"not a text file (NUL byte at offset {offset}; UTF-16 needs its byte-order mark)", f"{source}@{offset}"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # the code page is judged on a sample (a recording's labels come first), and only the winner decodes
    # the whole file: 15 full readings of a file with one endless line took seconds and 200 MB
    sample = data[:SAMPLE_BYTES]
    if len(data) > SAMPLE_BYTES and b"\n" in sample:
        sample = sample[: sample.rindex(b"\n") + 1]  # whole lines: no multibyte character cut in two
    best: tuple[float, int, str] | None = None
    for rank, page in enumerate(CODE_PAGES):
        try:
            text = sample.decode(page)  # the whole file when it is no larger than the sample
        except UnicodeDecodeError:
            continue
        score = (plausibility(text, page), -rank, page)
        if best is None or score > best:
            best = score
    assert best is not None  # cp850 and cp437 decode any bytes
    return data.decode(best[2], errors="replace")


def numbered_lines(text: str, source: str = "") -> list[tuple[int, str]]:
    """(line number, text without its line break and trailing blanks); CRLF, LF and CR all end a line. A
    line longer than MAX_LINE_CHARS is an InputError naming `source` and the line."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS:
            raise InputError(f"line of {len(line)} characters: not the output of a DNS tool", f"{source}:{number}")
    return [(number, line.rstrip()) for number, line in enumerate(lines, start=1)]


def rcode_from_text(text: str, where: str) -> int:
    try:
        return dns.rcode.from_text(text)
    except dns.exception.DNSException:
        raise InputError(f"unknown DNS status {text!r}", where) from None
