"""Recorded answers from `dig` output, e.g. `dig @10.1.4.1 mail.contoso.com A >> dns.txt`.

Each `dig` run gives one answer: the question, the status (NOERROR, NXDOMAIN, SERVFAIL, REFUSED...),
the answer section (CNAMEs included) and the server (`;; SERVER: ADDR#PORT(...)`). A run that got no
answer (`;; connection timed out; no servers could be reached`, or BIND 9.18's `;; communications
error to ADDR#PORT: timed out`) records a timeout; its question and server come from the command
line dig echoes in its banner.
"""

from __future__ import annotations

import re

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from diagnose.errors import InputError
from diagnose.probes.dns.recorded.model import RecordedAnswer, dns_name, server_label

_BANNER = re.compile(r"^; <<>> DiG [^<]*<<>>(?P<args>.*)$")
_HEADER = re.compile(r"^;; ->>HEADER<<- opcode: (?P<opcode>\w+), status: (?P<status>[A-Z]+), id: \d+")
_SERVER = re.compile(r"^;; SERVER: (?P<addr>[0-9A-Fa-f:.]+)(?:%[\w.-]+)?#(?P<port>\d+)")  # a zone index is dropped
_SECTION = re.compile(r"^;; (?P<name>[A-Z]+) SECTION:$")
_TIMED_OUT = re.compile(r"timed out|no servers could be reached", re.IGNORECASE)


def parse(lines: list[tuple[int, str]], source: str) -> list[RecordedAnswer]:
    """The answers in `dig` output: one per `; <<>> DiG` block."""
    blocks: list[list[tuple[int, str]]] = []
    for number, line in lines:
        if _BANNER.match(line) or not blocks:
            blocks.append([])
        blocks[-1].append((number, line))
    return [a for block in blocks if (a := _parse_block(block, source)) is not None]


def _parse_block(block: list[tuple[int, str]], source: str) -> RecordedAnswer | None:
    start = block[0][0]
    banner = _BANNER.match(block[0][1])
    status: str | None = None
    question: tuple[dns.name.Name, dns.rdatatype.RdataType] | None = None
    server: str | None = None
    section = ""
    answer: list[dns.rrset.RRset] = []
    timed_out = False
    for number, line in block:
        if not line.strip():
            continue
        if m := _HEADER.match(line):
            status = m.group("status")
        elif m := _SERVER.match(line):
            server = server_label(m.group("addr"), m.group("port"))
        elif m := _SECTION.match(line):
            section = m.group("name")
        elif line.startswith(";") and section == "QUESTION" and question is None:
            question = _question(line[1:], f"{source}:{number}")
        elif line.startswith(";"):
            timed_out = timed_out or bool(_TIMED_OUT.search(line))
        elif section == "ANSWER":
            answer.append(_record(line, f"{source}:{number}"))
    if status is None:
        if not (banner and timed_out):
            return None
        question, server = _from_command(banner.group("args"), f"{source}:{start}")
        return RecordedAnswer(question[0], question[1], None, [], server, start)
    if question is None:
        raise InputError("dig output without a QUESTION SECTION", f"{source}:{start}")
    try:
        rcode = dns.rcode.from_text(status)
    except dns.exception.DNSException:
        raise InputError(f"unknown status {status!r}", f"{source}:{start}") from None
    return RecordedAnswer(question[0], question[1], rcode, _merge(answer), server, start)


def _question(text: str, where: str) -> tuple[dns.name.Name, dns.rdatatype.RdataType]:
    fields = text.split()
    try:
        name = dns.name.from_text(fields[0])
        rdtype = dns.rdatatype.from_text(fields[-1])
    except (IndexError, dns.exception.DNSException):
        raise InputError(f"cannot read the question {text.strip()!r}", where) from None
    return name, rdtype


def _record(line: str, where: str) -> dns.rrset.RRset:
    fields = line.split(None, 4)
    try:
        name, ttl, rdclass, rdtype, rdata = fields
        return dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata)
    except (ValueError, dns.exception.DNSException) as exc:
        raise InputError(f"cannot read the record {line.strip()!r}: {exc}", where) from None


def _merge(records: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    merged: list[dns.rrset.RRset] = []
    for rrset in records:
        for existing in merged:
            if existing.name == rrset.name and existing.rdtype == rrset.rdtype:
                existing.union_update(rrset)
                break
        else:
            merged.append(rrset)
    return merged


def _from_command(args: str, where: str) -> tuple[tuple[dns.name.Name, dns.rdatatype.RdataType], str | None]:
    """Question and server of a dig run that got no answer, from its command line."""
    server, port, names, rdtype = None, "53", [], dns.rdatatype.A
    words = args.split()
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("@"):
            server = word[1:].split("%", 1)[0]  # a zone index is dropped, as on the SERVER line
        elif word == "-p" and i + 1 < len(words) and words[i + 1].isdigit():
            port = words[i + 1]
            i += 1
        elif word.startswith(("-", "+")):
            pass
        elif word.upper() in ("A", "AAAA", "CNAME"):
            rdtype = dns.rdatatype.from_text(word.upper())
        elif word.upper() != "IN":
            names.append(word)
        i += 1
    if not names:
        raise InputError("cannot tell which name this dig run asked for", where)
    return (dns_name(names[0], where), rdtype), (server_label(server, port) if server else None)
