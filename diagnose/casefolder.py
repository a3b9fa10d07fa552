"""A case folder in one command: every artefact the readers know, recognised by its content.

A support engineer gets a folder or a zip (`diagnose analyze DIR|ZIP`, `diagnose run --evidence-dir`):
TMG logs per array member, proxy logs, captures, DNS tool output, service and host exports, a HOSTS
file, certificates, bundles, and also screenshots and Word files. Each file is told by its first bytes,
with each reader's own detection, one function per kind in `KINDS` (first match wins, binary magics
first, then the text formats from the strictest to the loosest). A text export whose detection is
loose (CSV, netstat, DNS output, HOSTS) is taken only when its own reader reads it. Everything taken
goes to the normal collection as if it had been given with --log, --capture, --dns-recorded...;
everything else is skipped with the reason.

Zips (given, found in the folder, or one level inside another zip) are unpacked into a private temporary
folder, bounded in members, total size and compression ratio; member paths never leave that folder.
Facts read from a member cite it as `case.zip!folder/file` (see `CaseFolder.relabel`).
"""

from __future__ import annotations

import codecs
import io
import os
import shutil
import ssl
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from diagnose.bounds import MAX_SMALL_INPUT, open_regular, read_small
from diagnose.errors import DiagnoseError, InputError
from diagnose.facts import EvidenceBundle, Fact, Provenance

HEAD = 65536
MAX_FILES = 20_000  # files looked at in one case folder (zip members included)
MAX_READ = MAX_SMALL_INPUT  # text exports read whole by their reader to be recognised (bounds.py)
MAX_MEMBERS = 10_000  # per zip
MAX_TOTAL = 4 << 30  # bytes unpacked from all zips of one case
MAX_RATIO = 200  # uncompressed / compressed, for members above RATIO_FLOOR
RATIO_FLOOR = 1 << 20
MAX_DEPTH = 1  # a zip inside a zip is opened; one inside that is not
ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"

# what no reader takes, said plainly (first bytes -> what it is)
_KNOWN_JUNK = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a bitmap image"),
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0", "an Office 97-2003 document"),
    (b"ElfFile", "a Windows event log (.evtx): save the events as CSV or XML for --host-export"),
    (b"Rar!", "a RAR archive (only zip archives are opened)"),
    (b"7z\xbc\xaf", "a 7-Zip archive (only zip archives are opened)"),
)


@dataclass(frozen=True)
class Sample:
    """What a detector sees of one file: its first bytes (decompressed for .gz) and where it is."""

    path: Path
    head: bytes
    size: int
    gzipped: bool = False

    def text(self) -> str:
        return _text(self.head)


@dataclass(frozen=True)
class Kind:
    name: str  # what the report says it took
    option: str  # the run option it stands for
    detect: Callable[[Sample], bool]  # True: this kind; InputError: this kind, but unreadable
    gzip_ok: bool = False  # its reader takes .gz files


@dataclass(frozen=True)
class Taken:
    kind: str
    option: str
    path: str  # as read (a temporary path for zip members)
    shown: str  # as cited: case.zip!member


@dataclass(frozen=True)
class Skipped:
    shown: str
    reason: str


@dataclass
class CaseFolder:
    """What a survey of a folder or zip found; `close()` removes the unpacked zip members."""

    roots: list[str]
    taken: list[Taken] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unpacked: dict[str, str] = field(default_factory=dict)  # temporary folder -> zip as cited
    workdir: str | None = None
    unpacked_bytes: int = 0
    seen: int = 0

    def close(self) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> CaseFolder:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def paths(self, kind: str) -> list[str]:
        return [t.path for t in self.taken if t.kind == kind]

    def shown(self, text: str) -> str:
        """A path or message with the temporary folders of unpacked zips named as their zips."""
        for tmp in sorted(self.unpacked, key=len, reverse=True):
            text = text.replace(tmp + os.sep, self.unpacked[tmp] + "!")
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "roots": list(self.roots),
            "taken": [{"kind": t.kind, "option": t.option, "file": t.shown} for t in self.taken],
            "skipped": [{"file": s.shown, "reason": s.reason} for s in self.skipped],
        }

    def lines(self) -> Iterator[str]:
        """One line per file, for stderr."""
        for t in self.taken:
            yield f"took {t.kind} {t.shown} (as {t.option})"
        for s in self.skipped:
            yield f"skipped {s.shown}: {s.reason}"

    def relabel(self, bundle: EvidenceBundle) -> EvidenceBundle:
        """The bundle with every temporary path cited as zip!member, and the survey recorded."""
        if self.unpacked:
            bundle = replace(
                bundle,
                facts=tuple(self._fact(f) for f in bundle.facts),
                probes=tuple(replace(p, reason=self.shown(p.reason)) for p in bundle.probes),
                excerpts={self.shown(k): self.shown(v) for k, v in bundle.excerpts.items()},
            )
        return replace(bundle, case_folder=self.to_json())

    def _fact(self, f: Fact) -> Fact:
        def fix(value: Any) -> Any:
            if isinstance(value, str):
                return self.shown(value)
            if isinstance(value, tuple):
                return tuple(fix(v) for v in value)
            return value

        p = f.provenance
        return Fact(
            f.kind,
            fix(f.subject),
            {k: fix(v) for k, v in f.attrs.items()},
            Provenance(p.probe, p.check, fix(p.source), fix(p.location), p.time),
        )


# --------------------------------------------------------------------------------- detectors


def _text(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return head[: len(head) // 2 * 2].decode("utf-16", "replace")
    if len(head) >= 4 and head[1] == 0 and head[3] == 0 and head[0] != 0:
        return head[: len(head) // 2 * 2].decode("utf-16-le", "replace")
    return head.decode("utf-8-sig", "replace")


def _binary(head: bytes) -> bool:
    text_utf16 = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
        len(head) >= 4 and head[1] == 0 and head[3] == 0 and head[0] != 0
    )
    return b"\x00" in head[:4096] and not text_utf16


def is_capture(s: Sample) -> bool:
    from diagnose.probes.capture import formats, netmon_text

    if s.head[:4] in formats.PCAP_MAGICS or s.head[:4] in (formats.PCAPNG_MAGIC, formats.NETMON2, formats.NETMON1):
        return True
    return not _binary(s.head) and netmon_text.looks_like(s.text())


def is_der_certificate(s: Sample) -> bool:
    if s.gzipped or s.head[:1] != b"\x30" or s.size > HEAD:
        return False
    from cryptography import x509

    try:
        x509.load_der_x509_certificate(s.head)
    except ValueError:
        return False
    return True


def is_bundle(s: Sample) -> bool:
    """A bundle or a {"facts": [...]} file, read whole by the evidence reader."""
    start = s.text().lstrip()[:4096]
    if not start.startswith("{") or '"facts"' not in s.text():
        return False
    from diagnose.probes.evidence import read_recorded_facts

    _whole(s)
    read_recorded_facts(s.path)
    return True


def is_proxy_log(s: Sample) -> bool:
    from diagnose.probes import proxylogs
    from diagnose.probes.proxylogs.lines import text_stream

    try:  # a UTF-8 or UTF-16 byte order mark as the reader takes it
        proxylogs.detect(text_stream(io.BytesIO(), s.head)[1], str(s.path))
    except proxylogs.NotAProxyLogError:
        return False
    return True


def is_tmg_log(s: Sample) -> bool:
    from diagnose.probes.logs import detect
    from diagnose.probes.logs.scan import decoded_blocks, utf16_encoding

    head = s.head[3:] if s.head.startswith(codecs.BOM_UTF8) else s.head
    if utf16_encoding(head) is not None:
        head = next(decoded_blocks(io.BytesIO(head)), b"")[:HEAD]
    elif _binary(head):
        return False
    try:
        detect(head, str(s.path))
    except InputError:
        return False
    return True


def is_host_export(s: Sample) -> bool:
    from diagnose.probes.host.exports import detect, read_host_export

    if _binary(s.head) or detect(s.text()) in ("empty", "unknown"):
        return False
    return _reads(s, read_host_export)


def is_services_export(s: Sample) -> bool:
    from diagnose.probes.services.exports import detect_format, read_export

    if _binary(s.head) or detect_format(s.text()) in ("empty", "unknown"):
        return False
    return _reads(s, read_export)


def is_dns_recorded(s: Sample) -> bool:
    from diagnose.probes.dns.recorded import read_recorded

    return not _binary(s.head) and _reads(s, read_recorded)


def is_hosts_file(s: Sample) -> bool:
    """Every line an address and names, or a comment; at least one entry."""
    from diagnose.probes.dns.hosts import parse_hosts

    if _binary(s.head) or s.size > HEAD:
        return False
    hosts = parse_hosts(s.text(), str(s.path))
    return bool(hosts.entries) and not hosts.ignored


def is_pem_certificate(s: Sample) -> bool:
    return not s.gzipped and s.size <= MAX_READ and "-----BEGIN CERTIFICATE-----" in s.text()


def _whole(s: Sample) -> None:
    if s.size > MAX_READ:
        raise InputError(f"larger than {MAX_READ >> 20} MiB", str(s.path))


def _reads(s: Sample, reader: Callable[[Path], Any]) -> bool:
    """True when the kind's own reader reads the file; a loose sniff is no proof."""
    if s.gzipped or s.size > MAX_READ:
        return False
    try:
        reader(s.path)
    except InputError:
        return False
    return True


KINDS: tuple[Kind, ...] = (
    Kind("capture", "--capture", is_capture, gzip_ok=True),
    Kind("certificate", "--ca-file", is_der_certificate),
    Kind("bundle", "--evidence", is_bundle),
    Kind("proxy-log", "--proxy-log", is_proxy_log, gzip_ok=True),
    Kind("tmg-log", "--log", is_tmg_log, gzip_ok=True),
    Kind("host-export", "--host-export", is_host_export),
    Kind("services-export", "--services-export", is_services_export),
    Kind("dns-recorded", "--dns-recorded", is_dns_recorded),
    Kind("hosts-file", "--hosts-file", is_hosts_file),
    Kind("certificate", "--ca-file", is_pem_certificate),
)


def recognise(sample: Sample) -> tuple[Kind | None, str]:
    """The kind of a file (first match in KINDS), or None and why not."""
    for kind in KINDS:
        if sample.gzipped and not kind.gzip_ok:
            continue
        try:
            if kind.detect(sample):
                return kind, ""
        except InputError as exc:
            return None, f"looks like a {kind.name} but cannot be read: {exc.message}"
    if not sample.head:
        return None, "empty file"
    for magic, what in _KNOWN_JUNK:
        if sample.head.startswith(magic):
            return None, f"{what}, not evidence any reader takes"
    if sample.gzipped:
        return None, "gzip-compressed, and no log or capture inside (only those readers take .gz)"
    if _binary(sample.head):
        return None, f"binary content no reader knows (first bytes {sample.head[:8].hex()})"
    return None, "text no reader recognises (not a log, capture, DNS output, export, HOSTS file or certificate)"


# --------------------------------------------------------------------------------- survey


def survey(roots: list[str]) -> CaseFolder:
    """Look at every file under `roots` (folders or zips); the caller closes the result."""
    case = CaseFolder([str(r) for r in roots])
    try:
        for root in roots:
            path = Path(root)
            if path.is_dir():
                _walk(case, path)
            elif path.is_file():
                _file(case, path, str(path), 0)
            else:
                raise InputError("no such folder or zip", str(path))
    except BaseException:
        case.close()
        raise
    return case


def _walk(case: CaseFolder, folder: Path) -> None:
    for top, dirs, files in os.walk(
        folder,
        onerror=lambda exc: case.skipped.append(Skipped(case.shown(str(exc.filename)), f"cannot list: {exc.strerror}")),
    ):
        dirs.sort()
        for name in sorted(files):
            path = Path(top) / name
            _file(case, path, case.shown(str(path)), 0)


def _file(case: CaseFolder, path: Path, shown: str, depth: int) -> None:
    case.seen += 1
    if case.seen > MAX_FILES:
        if case.seen == MAX_FILES + 1:
            case.skipped.append(Skipped(shown, f"more than {MAX_FILES} files: this and the rest are not read"))
        return
    if "__MACOSX" in Path(shown.replace("!", "/")).parts or path.name.startswith("._"):
        case.skipped.append(Skipped(shown, "macOS resource fork, not a file of the case"))
        return
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            case.skipped.append(Skipped(shown, "not a regular file"))
            return
        with open_regular(path) as fh:  # still a regular file when opened (not swapped for a FIFO)
            head = fh.read(HEAD)
    except OSError as exc:
        case.skipped.append(Skipped(shown, f"cannot be read: {exc.strerror or exc}"))
        return
    except InputError as exc:
        case.skipped.append(Skipped(shown, exc.message))
        return
    if head.startswith(ZIP_MAGIC) or (head.startswith(b"PK\x05\x06") and info.st_size == 22):
        _zip(case, path, shown, depth)
        return
    gzipped = head.startswith(GZIP_MAGIC)
    if gzipped:  # the start of what it holds (a cut or damaged .gz is read as far as it goes by its reader)
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, HEAD)
        except zlib.error as exc:
            case.skipped.append(Skipped(shown, f"damaged gzip file: {exc}"))
            return
    kind, why = recognise(Sample(path, head, info.st_size, gzipped))
    if kind is None:
        case.skipped.append(Skipped(shown, why))
    else:
        case.taken.append(Taken(kind.name, kind.option, str(path), shown))


def _zip(case: CaseFolder, path: Path, shown: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        case.skipped.append(Skipped(shown, f"a zip nested more than {MAX_DEPTH} level deep is not opened"))
        return
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        case.skipped.append(Skipped(shown, f"damaged zip archive: {exc}"))
        return
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        names = {m.filename for m in archive.infolist()}
        if "[Content_Types].xml" in names or "mimetype" in names:
            case.skipped.append(
                Skipped(shown, "an Office/OpenDocument file (a zip of XML), not evidence any reader takes")
            )
            return
        if len(members) > MAX_MEMBERS:
            case.skipped.append(Skipped(shown, f"{len(members)} members: more than {MAX_MEMBERS}, not opened"))
            return
        if case.workdir is None:
            case.workdir = tempfile.mkdtemp(prefix="diagnose-case-")
        target = Path(tempfile.mkdtemp(dir=case.workdir))
        case.unpacked[str(target)] = shown
        for member in members:
            _member(case, archive, member, target, depth)


def _member(case: CaseFolder, archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, depth: int) -> None:
    parts = [p for p in member.filename.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    shown = case.unpacked[str(target)] + "!" + "/".join(parts)
    if not parts:
        case.skipped.append(Skipped(shown, "member without a usable name"))
        return
    parts = [p.replace(":", "_") for p in parts]  # no drive letters, no NTFS streams
    dest = target.joinpath(*parts)
    if dest.exists():
        case.skipped.append(Skipped(shown, "a second member of the same name"))
        return
    if member.flag_bits & 0x1:
        case.skipped.append(Skipped(shown, "encrypted zip member"))
        return
    why = _extract(case, archive, member, dest)
    if why:
        dest.unlink(missing_ok=True)
        case.skipped.append(Skipped(shown, why))
        return
    _file(case, dest, shown, depth + 1)


def _extract(case: CaseFolder, archive: zipfile.ZipFile, member: zipfile.ZipInfo, dest: Path) -> str:
    """Unpack one member within the bounds; the reason it was not, or ""."""
    if case.unpacked_bytes + member.file_size > MAX_TOTAL:
        return f"unpacking it would pass {MAX_TOTAL >> 30} GiB for the case"
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with archive.open(member) as src, open(dest, "xb") as out:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                written += len(block)
                if written > member.file_size or case.unpacked_bytes + written > MAX_TOTAL:
                    return "larger than its zip entry says (a zip bomb?), not unpacked"
                if written > RATIO_FLOOR and written > MAX_RATIO * max(member.compress_size, 1):
                    return f"compressed more than {MAX_RATIO}:1 (a zip bomb?), not unpacked"
                out.write(block)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        return f"damaged zip member: {exc}"
    finally:
        case.unpacked_bytes += written
    return ""


# --------------------------------------------------------------------------------- into a run


def certificates_pem(case: CaseFolder) -> str | None:
    """The certificates found, as one PEM file in the case's temporary folder (--ca-file takes one)."""
    found = case.paths("certificate")
    if not found:
        return None
    chunks = []
    for name in found:
        data = read_small(name, MAX_READ, "certificate file")
        chunks.append(data.decode("ascii", "replace") if b"-----BEGIN" in data else ssl.DER_cert_to_PEM_cert(data))
    if case.workdir is None:
        case.workdir = tempfile.mkdtemp(prefix="diagnose-case-")
    target = Path(case.workdir) / "certificates.pem"
    target.write_text("\n".join(c.strip() for c in chunks) + "\n", encoding="ascii")
    return str(target)


def add_to_inputs(case: CaseFolder, inputs: Any) -> None:
    """Feed what was taken into a run's inputs, after what was given by name."""
    inputs.log_paths += case.paths("tmg-log")
    inputs.capture_paths += case.paths("capture")
    inputs.evidence_paths += case.paths("bundle")
    inputs.services_export += case.paths("services-export")
    extra = inputs.extra
    for key, kind in (
        ("proxy_log_paths", "proxy-log"),
        ("dns_recorded", "dns-recorded"),
        ("host_exports", "host-export"),
    ):
        extra[key] = list(extra.get(key) or ()) + case.paths(kind)
    hosts = case.paths("hosts-file")
    if hosts and not inputs.hosts_file:
        inputs.hosts_file = hosts[0]
        for t in case.taken:
            if t.kind == "hosts-file" and t.path != hosts[0]:
                case.skipped.append(Skipped(t.shown, "a second HOSTS file: one is read (the first found)"))
        case.taken = [t for t in case.taken if t.kind != "hosts-file" or t.path == hosts[0]]
    if case.paths("certificate") and not extra.get("ca_file"):
        extra["ca_file"] = certificates_pem(case)


def open_case(roots: list[str]) -> CaseFolder:
    """`survey`, with errors as one line naming the file."""
    try:
        return survey(roots)
    except DiagnoseError:
        raise
    except OSError as exc:
        raise InputError(f"cannot read the case folder: {exc.strerror or exc}", str(exc.filename or roots[0])) from None
