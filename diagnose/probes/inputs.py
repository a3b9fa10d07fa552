"""The log files a reader is given: files, folders, globs and zip archives -> `LogInput`s in time order.

Shared by the TMG log reader (diagnose/probes/logs) and the proxy log readers (diagnose/probes/proxylogs),
so that either imports only this to find its files, not the other's reader.
"""

from __future__ import annotations

import glob
import os
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from diagnose.bounds import input_size, is_gzip, open_input, zip_archive
from diagnose.errors import InputError

__all__ = ["ROTATED", "SQL_EXPRESS_HINT", "LogInput", "expand"]

LOG_SUFFIXES = (".w3c", ".iis", ".log", ".txt", ".csv", ".tsv", ".gz", ".zip")
# TMG's default log storage: SQL Server Express databases (ISALOG_yyyymmdd_FWS_nnn.mdf, with .ldf), which
# only SQL Server reads. They are not read; the hint says how to get text instead.
DATABASE_SUFFIXES = (".mdf", ".ldf")
SQL_EXPRESS_HINT = (
    "TMG logged to SQL Server Express, which diagnose does not read: export each database's FirewallLog and "
    "WebProxyLog tables to CSV with a header row (diagnose reads such exports), or switch Firewall and Web "
    "Proxy logging to text files (W3C) in the TMG console (Logs & Reports, Configure Firewall Logging, "
    "Configure Web Proxy Logging) and reproduce the problem"
)
ROTATED = re.compile(r"\.(?:log|txt)\.(\d{1,4})(?:\.gz)?$", re.IGNORECASE)  # logrotate's access.log.1, .2.gz
_ROTATION = re.compile(r"(\d{8})(?:_(?:FWS|WEB)_?(\d+))?", re.IGNORECASE)


@dataclass(frozen=True)
class LogInput:
    """One log to read: a file, or a member of a zip archive (`member`)."""

    path: str
    member: str | None = None
    named: bool = True  # the user named this file (a bad one is an error, not a note)

    @property
    def name(self) -> str:
        return f"{self.path}!{self.member}" if self.member else self.path

    def open(self, deadline: float | None = None) -> IO[bytes]:
        """The log's bytes, decompressed when gzip'd or zipped, through the bounds (`diagnose.bounds`)."""
        return open_input(self.path, self.member, deadline)

    def plain(self) -> bool:
        return self.member is None and not is_gzip(self.path)


def expand(paths: Sequence[str], rotated: bool = False) -> tuple[list[LogInput], list[str]]:
    """Files, folders and globs -> logs in time order; (logs, problems). `rotated`: a folder's rotated
    logs (`access.log.1`, `error.log.2.gz`) are taken too."""
    found: list[LogInput | list[LogInput]] = []
    problems: list[str] = []
    for given in paths:
        matches = sorted(glob.glob(given)) if glob.has_magic(given) else [given]
        if not matches:
            problems.append(f"{given}: no file matches")
            continue
        for item in matches:
            path = Path(item)
            if path.is_dir():
                files = [
                    p
                    for p in sorted(path.rglob("*"))
                    if p.is_file()
                    and (p.suffix.lower() in LOG_SUFFIXES or (rotated and ROTATED.search(p.name) is not None))
                ]
                found.extend(_with_members(str(p), named=False) for p in files)
                databases = sum(1 for p in path.rglob("*") if p.suffix.lower() == ".mdf" and p.is_file())
                if databases:
                    problems.append(
                        f"{path}: {databases} SQL Express database file(s) (.mdf) not read: " + SQL_EXPRESS_HINT
                    )
            elif path.is_file() and path.suffix.lower() in DATABASE_SUFFIXES:
                problems.append(f"{path}: a SQL Express database file, not read: {SQL_EXPRESS_HINT}")
            elif path.exists():
                input_size(path)  # a FIFO or device is refused here, before anything opens it
                found.append(_with_members(str(path), named=True))
            else:
                raise InputError("no such file or folder", str(path))
    flat: list[LogInput] = []
    for entry in found:
        flat.extend(entry if isinstance(entry, list) else [entry])
    flat.sort(key=_time_order)
    return flat, problems


def _with_members(path: str, named: bool) -> LogInput | list[LogInput]:
    if zipfile.is_zipfile(path):
        try:
            archive = zip_archive(path)
            return [LogInput(path, m.filename, named) for m in archive.infolist() if not m.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"unreadable zip archive: {exc}", path) from None
    return LogInput(path, None, named)


def _time_order(log: LogInput) -> tuple[str, int, str]:
    name = os.path.basename(log.member or log.path)
    m = _ROTATION.search(name)
    if m:
        return (m.group(1), int(m.group(2) or 0), name)
    return ("", 0, log.name)
