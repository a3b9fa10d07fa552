"""Recorded DNS answers: a tool's output, saved to a file, answering as the server did.

Offline runs and examples take their DNS evidence from such files instead of a live resolver. Each
file is read as the tool that printed it, told apart line by line (see `transcript`):

- `dig` output (`dig`): each run is one question; see `dig`.
- Windows `nslookup` (what a TMG host has: Windows Server 2008 R2 and later) and BIND's `nslookup`
  (Linux, macOS): interactive or not, with or without prompt lines; see `nslookup`.
- PowerShell `Resolve-DnsName` tables and lists (Windows Server 2012 and later); see `powershell`.

In a console paste with prompt lines, each command's output is read by its own tool's reader, so one
file may hold nslookup and Resolve-DnsName runs alike. Every reader gives the same `RecordedAnswer`s
(a question, the server's status or a timeout, the answer records, the server), grouped here into one
`RecordedServer` per server. A line that cannot be read is one error naming the file and line.
"""

from __future__ import annotations

from pathlib import Path

from diagnose.errors import InputError, read_input
from diagnose.probes.dns.recorded import dig, nslookup, powershell
from diagnose.probes.dns.recorded.model import RecordedAnswer, RecordedServer, decode, numbered_lines
from diagnose.probes.dns.recorded.transcript import Segment, segments

__all__ = ["RecordedAnswer", "RecordedServer", "read_recorded"]

FORMATS = "dig, nslookup (Windows or BIND) or Resolve-DnsName output"


def read_recorded(path: Path | str) -> list[RecordedServer]:
    """The servers recorded in a file of DNS tool output, in the order they first appear."""
    path = Path(path)
    data = read_input(path, "recorded DNS answers not found", "is a directory, not a file of recorded DNS answers")
    source = str(path)
    answers: list[RecordedAnswer] = []
    for segment in segments(numbered_lines(decode(data, source), source)):
        answers.extend(_read_segment(segment, source))
    servers: dict[str, RecordedServer] = {}
    for answer in answers:
        label = answer.server or "recorded"
        server = servers.setdefault(label, RecordedServer(label, source))
        server.answers.setdefault((answer.qname, answer.rdtype), answer)
    if not servers:
        raise InputError(f"no recorded DNS answers found (expected {FORMATS})", f"{source}:1")
    return list(servers.values())


def _read_segment(segment: Segment, source: str) -> list[RecordedAnswer]:
    tool = segment.command.tool if segment.command else _tool_of(segment)
    if tool == "dig":
        return dig.parse(segment.lines, source)
    if tool == "resolve-dnsname":
        runs = powershell.parse(segment.lines, source, segment.command)
    elif tool == "nslookup":
        runs = nslookup.parse(segment.lines, source, segment.command, bind=nslookup.is_bind(segment.lines))
    elif tool == "other":
        return []  # the output of another command in the transcript (ipconfig, ping...)
    else:
        number, text = next((n, t) for n, t in segment.lines if t.strip())
        raise InputError(f"not {FORMATS}: {text.strip()!r}", f"{source}:{number}")
    return [answer for run in runs for answer in run.answers()]


def _tool_of(segment: Segment) -> str | None:
    """Which tool printed lines that came without a prompt: the first line only one of them prints."""
    for _, line in segment.lines:
        if line.startswith(("; <<>> DiG", ";; ->>HEADER<<-", ";; QUESTION SECTION:")):
            return "dig"
        if powershell.looks_like(line):
            return "resolve-dnsname"
        if nslookup.looks_like(line):
            return "nslookup"
    return None
