"""HOSTS files as the TMG host reads them, in the Windows and the POSIX format.

Both formats are the same at heart: one address, then one or more names, separated by spaces or
tabs; `#` starts a comment, anywhere on a line. Windows files come as ANSI, UTF-8 (with or without a
byte-order mark) or UTF-16, with CRLF line ends; POSIX files as UTF-8 with LF. IPv6 addresses may carry
a zone (`fe80::1%eth0`). A line the system resolver would ignore (no name, or a first field that is
not an address) is ignored here too, but remembered with its line number, so nothing is lost silently.
"""

from __future__ import annotations

import codecs
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from diagnose.compat import SLOTS
from diagnose.errors import InputError, read_input


@dataclass(frozen=True, **SLOTS)
class HostsEntry:
    address: str
    names: tuple[str, ...]
    line: int
    text: str


@dataclass(frozen=True, **SLOTS)
class IgnoredLine:
    line: int
    text: str
    why: str


@dataclass(frozen=True)
class HostsFile:
    path: str
    entries: tuple[HostsEntry, ...]
    ignored: tuple[IgnoredLine, ...] = ()

    def lookup(self, name: str) -> list[HostsEntry]:
        """Entries listing `name` (case-insensitive, trailing dot ignored), in file order."""
        wanted = normalise_name(name)
        return [e for e in self.entries if wanted in e.names]

    def addresses(self, name: str) -> list[str]:
        out: dict[str, None] = {}
        for entry in self.lookup(name):
            out.setdefault(entry.address, None)
        return list(out)


def normalise_name(name: str) -> str:
    return name.strip().lower().rstrip(".")


def system_hosts_path() -> Path:
    """`%SystemRoot%\\System32\\drivers\\etc\\hosts` on Windows, `/etc/hosts` elsewhere."""
    if sys.platform == "win32":
        root = os.environ.get("SYSTEMROOT", r"C:\Windows")
        return Path(root) / "System32" / "drivers" / "etc" / "hosts"
    return Path("/etc/hosts")


def decode_hosts(data: bytes) -> str:
    """Decode as Windows tools write HOSTS files: UTF-16 or UTF-8 by byte-order mark, else UTF-8, else ANSI."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def parse_hosts(text: str, path: str) -> HostsFile:
    entries: list[HostsEntry] = []
    ignored: list[IgnoredLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        content = raw.split("#", 1)[0].strip()
        if not content:
            continue
        fields = content.split()
        address = fields[0]
        try:
            ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            ignored.append(IgnoredLine(number, raw.rstrip(), f"{address!r} is not an IP address"))
            continue
        if len(fields) < 2:
            ignored.append(IgnoredLine(number, raw.rstrip(), "an address without a name"))
            continue
        names = tuple(normalise_name(n) for n in fields[1:])
        entries.append(HostsEntry(address, names, number, raw.rstrip()))
    return HostsFile(path, tuple(entries), tuple(ignored))


def read_hosts(path: Path | str) -> HostsFile:
    """Read a HOSTS file; a missing or unreadable file raises InputError naming it."""
    path = Path(path)
    data = read_input(path, "hosts file not found", "is a directory, not a hosts file")
    if b"\x00" in data and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        offset = data.index(b"\x00")
        raise InputError(f"not a text file (NUL byte at offset {offset})", f"{path}@{offset}")
    return parse_hosts(decode_hosts(data), str(path))
