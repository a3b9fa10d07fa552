"""Shell transcripts: prompt lines, the commands they ran, and which tool printed what.

A recording may be a console paste with the prompts (`C:\\>nslookup mail.contoso.com 10.1.4.1`,
`PS C:\\> Resolve-DnsName ...`, `$ nslookup ...`, `user@host:~$ dig ...`) or the bare output of the
tools. A prompt line starts a segment: what follows, up to the next prompt, is that command's output
and is read by the reader for its tool (output of other commands, e.g. `ipconfig /flushdns`, is
skipped). Without prompts the whole file is one segment, and its content tells the tool.

A PowerShell `Start-Transcript` file is read the same way: its start and end blocks, between lines of
asterisks (`**********************` / `Windows PowerShell transcript start` / `Start time: ...`), are
skipped. [MicrosoftDocs/powershell-docs JEA audit documentation; transcripts quoted in write-ups]
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from diagnose.compat import removesuffix

_PROMPTS = (
    re.compile(r"^PS(?: [^>]*)?>\s?(?P<cmd>.*)$"),  # PS C:\Users\admin> ...
    re.compile(r"^[A-Za-z]:\\[^>]*>(?P<cmd>.*)$"),  # C:\Users\admin>...
    re.compile(r"^(?:\[[^\]]+\]|[\w.-]+@[\w.-]+(?:[: ]\S*)?)\s*[$#%] (?P<cmd>.*)$"),  # user@host:~$ ...
    re.compile(r"^[$%] (?P<cmd>.*)$"),  # $ ...
)
_BARE_COMMAND = re.compile(r"^(?P<cmd>(?:nslookup|dig|resolve-dnsname)(?:\.exe)?(?:\s+(?!:).*)?)$", re.IGNORECASE)
_MAYBE_COMMAND = re.compile(r"[>$%#]|^\s*(?:nslookup|dig|resolve-dnsname)", re.IGNORECASE)  # cheap first look
_TRANSCRIPT_BANNER = re.compile(r"^\*{10,}$")
_TRANSCRIPT_STARTED = re.compile(r"^Transcript started, output file is ")
_GIT_BASH_TITLE = re.compile(r"^[\w.-]+@[\w.-]+ MINGW(?:32|64) .*$")  # Git Bash prints it above each prompt
_TOOLS = {"nslookup": "nslookup", "dig": "dig", "resolve-dnsname": "resolve-dnsname"}


@dataclass
class Command:
    tool: str  # nslookup | dig | resolve-dnsname | other
    args: list[str]
    line: int


@dataclass
class Segment:
    command: Command | None
    lines: list[tuple[int, str]] = field(default_factory=list)


def command_of(line: str, number: int) -> Command | None:
    """The command on a prompt line (or a bare `nslookup ...` line), else None."""
    if not _MAYBE_COMMAND.search(line):
        return None
    for prompt in _PROMPTS:
        if m := prompt.match(line):
            return _command(m.group("cmd"), number)
    if m := _BARE_COMMAND.match(line.strip()):
        return _command(m.group("cmd"), number)
    return None


def _command(text: str, number: int) -> Command:
    text = text.split("|", 1)[0].strip()  # a pipeline: the first command prints the records
    try:
        words = shlex.split(text) if "'" in text or '"' in text else text.split()
    except ValueError:
        words = text.split()
    if not words:
        return Command("", [], number)
    tool = removesuffix(re.split(r"[\\/]", words[0])[-1].lower(), ".exe")
    args: list[str] = []
    skip_next = False
    for word in words[1:]:
        if skip_next:
            skip_next = False
        elif re.fullmatch(r"\d?>>?(&\d)?", word):
            skip_next = not word.endswith(("&1", "&2"))  # `> file` names its target next
        elif not re.match(r"\d?>", word):
            args.append(word)
    return Command(_TOOLS.get(tool, "other"), args, number)


def segments(lines: list[tuple[int, str]]) -> list[Segment]:
    out = [Segment(None)]
    banner = False
    for number, line in lines:
        if _TRANSCRIPT_BANNER.match(line):  # Start-Transcript's start and end blocks
            banner = not banner
            continue
        if banner or _TRANSCRIPT_STARTED.match(line):
            continue
        command = command_of(line, number)
        if command is not None:
            out.append(Segment(command if command.tool else None))  # after an empty prompt: whatever follows
        elif not _GIT_BASH_TITLE.match(line):
            out[-1].lines.append((number, line))
    return [s for s in out if s.command is not None or any(text.strip() for _, text in s.lines)]
