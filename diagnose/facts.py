"""The evidence model: facts with provenance, probe runs, and the versioned evidence bundle.

A fact is what a probe saw, never a conclusion: a `kind` (dotted, declared in `diagnose/factkinds/`),
a `subject` (what it is about), flat typed attributes and where it came from.
"""

from __future__ import annotations

import json
import math
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from diagnose import __version__
from diagnose.bounds import MAX_BUNDLE_BYTES, MAX_BUNDLE_FACTS, read_small
from diagnose.compat import SLOTS, UTC, StrEnum
from diagnose.errors import InputError

Scalar = typing.Union[str, int, float, bool]
Value = typing.Union[Scalar, typing.Tuple[str, ...]]

BUNDLE_FORMAT = "diagnose-evidence"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
BUNDLE_VERSION = 1


class ProbeStatus(StrEnum):
    COMPLETE = "complete"
    PARTIAL = "partial"
    UNAVAILABLE = "unavailable"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, **SLOTS)
class Provenance:
    """Where a fact came from: probe, check id, source file or host, line/frame/offset, time."""

    probe: str
    check: str | None = None
    source: str | None = None
    location: str | None = None
    time: str | None = None

    def cite(self) -> str:
        """Short human citation, e.g. `capture.txt frame 1410` or `dns probe`."""
        if self.source and self.location:
            return f"{self.source} {self.location}"
        if self.source:
            return self.source
        return f"{self.probe} probe" + (f" ({self.check})" if self.check else "")

    def to_json(self) -> dict[str, str]:
        return {k: v for k in PROVENANCE_FIELDS if (v := getattr(self, k)) is not None}


PROVENANCE_FIELDS = tuple(f.name for f in fields(Provenance))


@dataclass(frozen=True, **SLOTS)
class Fact:
    kind: str
    subject: str
    attrs: Mapping[str, Value]
    provenance: Provenance

    def get(self, name: str) -> Value | None:
        if name == "subject":
            return self.subject
        if name == "kind":
            return self.kind
        return self.attrs.get(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "attrs": {k: list(v) if isinstance(v, tuple) else v for k, v in self.attrs.items()},
            "provenance": self.provenance.to_json(),
        }


def make_fact(
    kind: str,
    subject: str,
    probe: str,
    /,
    *,
    source: str | None = None,
    location: str | None = None,
    check: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    **more: Any,
) -> Fact:
    """Build a fact; `None` attributes are left out (missing is not the same as empty), lists become tuples.

    Attributes come as keywords, or in `attrs` for names that clash with the provenance keywords
    (`source`, `location`, `check`, `attrs`).
    """
    clean: dict[str, Value] = {}
    for key, value in {**(attrs or {}), **more}.items():
        if value is None:
            continue
        clean[key] = tuple(value) if isinstance(value, (list, tuple, set, frozenset)) else value
    return Fact(kind, subject, clean, Provenance(probe, check, source, location, now_iso()))


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, **SLOTS)
class ProbeRun:
    """What one probe (one check) did: its status and why, and which fact kinds it was to deliver."""

    probe: str
    status: ProbeStatus
    reason: str = ""
    check: str | None = None
    kinds: tuple[str, ...] = ()
    elapsed: float | None = None
    notes: tuple[str, ...] = ()  # the probe's warnings: skipped inputs, partial reads, fallbacks

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"probe": self.probe, "status": self.status.value, "reason": self.reason}
        if self.check:
            out["check"] = self.check
        out["kinds"] = list(self.kinds)
        if self.elapsed is not None:
            out["elapsed"] = round(self.elapsed, 4)
        if self.notes:  # additive: bundles without notes read as before
            out["notes"] = list(self.notes)
        return out

    def notes_shown(self, limit: int = 10) -> list[str]:
        """The first `limit` notes for a report, and how many more the bundle holds."""
        more = len(self.notes) - limit
        return list(self.notes[:limit]) + ([f"... {more} more note(s) in the bundle"] if more > 0 else [])


@dataclass(frozen=True)
class EvidenceBundle:
    """Everything a diagnosis needs, saved between `collect` and `analyze`."""

    facts: tuple[Fact, ...]
    probes: tuple[ProbeRun, ...] = ()
    profile: Mapping[str, Any] = field(default_factory=dict)
    answers: Mapping[str, str] = field(default_factory=dict)
    excerpts: Mapping[str, str] = field(default_factory=dict)
    tool_version: str = __version__
    rulebook_version: str | None = None
    created: str = field(default_factory=now_iso)
    description: str = ""
    case_folder: Mapping[str, Any] = field(default_factory=dict)  # `diagnose analyze DIR`: files taken and skipped

    def to_json(self) -> dict[str, Any]:
        out = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_VERSION,
            "tool_version": self.tool_version,
            "rulebook_version": self.rulebook_version,
            "created": self.created,
            "description": self.description,
            "profile": dict(self.profile),
            "answers": dict(self.answers),
            "probes": [p.to_json() for p in self.probes],
            "facts": [f.to_json() for f in self.facts],
            "excerpts": dict(self.excerpts),
        }
        if self.case_folder:
            out["case_folder"] = dict(self.case_folder)
        return out

    def save(self, path: Path | str) -> None:
        """Write the bundle atomically (a temporary file renamed over `path`): never half a bundle."""
        from diagnose.safetext import to_json
        from diagnose.writing import write_file

        write_file(path, to_json(self.to_json()) + "\n")

    def available_kinds(self) -> set[str]:
        """Kinds for which evidence was gathered: facts exist, or a probe that delivers them ran."""
        kinds = {f.kind for f in self.facts}
        for run in self.probes:
            if run.status in (ProbeStatus.COMPLETE, ProbeStatus.PARTIAL):
                kinds.update(run.kinds)
        return kinds


# --------------------------------------------------------------------------------------- loading


class JsonReader:
    """Type-checked access to parsed JSON that names the file and JSON path on any error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, jpath: str, message: str) -> InputError:
        return InputError(message, f"{self.source}:{jpath}")

    def obj(self, value: Any, jpath: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(jpath, f"expected an object, got {_json_type(value)}")
        return value

    def array(self, value: Any, jpath: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(jpath, f"expected an array, got {_json_type(value)}")
        return value

    def text(self, value: Any, jpath: str, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(jpath, f"expected a string, got {_json_type(value)}")
        return value

    def keys(self, value: dict[str, Any], jpath: str, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
        allowed = set(allowed)
        for key in value:
            if key not in allowed:
                raise self.fail(f"{jpath}.{key}", f"unknown key {key!r} (expected one of {', '.join(sorted(allowed))})")
        for key in required:
            if key not in value:
                raise self.fail(jpath, f"missing key {key!r}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_fact(raw: Any, jpath: str, r: JsonReader) -> Fact:
    """Check the shape of one fact (types are checked against the fact kinds later)."""
    obj = r.obj(raw, jpath)
    r.keys(obj, jpath, ("kind", "subject", "attrs", "provenance"), ("kind", "subject"))
    kind = r.text(obj["kind"], f"{jpath}.kind")
    subject = r.text(obj["subject"], f"{jpath}.subject")
    attrs_raw = r.obj(obj.get("attrs", {}), f"{jpath}.attrs")
    attrs: dict[str, Value] = {}
    for key, value in attrs_raw.items():
        apath = f"{jpath}.attrs.{key}"
        if value is None:
            continue
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str):
                    raise r.fail(f"{apath}[{i}]", f"list attributes hold strings, got {_json_type(item)}")
            attrs[key] = tuple(value)
        elif isinstance(value, (str, bool, int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise r.fail(apath, "numbers must be finite")
            attrs[key] = value
        else:
            raise r.fail(
                apath, f"attributes are flat: expected string, number, boolean or list, got {_json_type(value)}"
            )
    prov_raw = r.obj(obj.get("provenance", {"probe": "recorded"}), f"{jpath}.provenance")
    r.keys(prov_raw, f"{jpath}.provenance", PROVENANCE_FIELDS, ("probe",))
    prov_fields = {k: r.text(v, f"{jpath}.provenance.{k}", optional=k != "probe") for k, v in prov_raw.items()}
    probe = prov_fields.pop("probe")
    assert probe is not None  # required above, and r.text gives None only where optional
    prov = Provenance(probe, **prov_fields)
    assert kind is not None and subject is not None
    return Fact(kind, subject, attrs, prov)


def load_json(path: Path | str) -> Any:
    """Read a JSON file; malformed JSON names the file, line and column."""
    path = Path(path)
    try:
        data = read_small(path, MAX_BUNDLE_BYTES, "JSON file")
    except FileNotFoundError:
        raise InputError("file not found", str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a JSON file", str(path)) from None
    except OSError as exc:
        raise InputError(exc.strerror or str(exc), str(path)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", f"{path}@{exc.start}") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} (column {exc.colno})", f"{path}:{exc.lineno}") from None
    except ValueError as exc:
        raise InputError(f"malformed JSON: {exc}", str(path)) from None
    except RecursionError:
        raise InputError("malformed JSON: nested too deeply", str(path)) from None
    if _SURROGATE_ESCAPE.search(text):  # a lone surrogate is no text: kept as its printable escape
        from diagnose.safetext import printable_data

        data = printable_data(data)
    return data


def bundle_from_json(raw: Any, source: str) -> EvidenceBundle:
    r = JsonReader(source)
    obj = r.obj(raw, "$")
    r.keys(
        obj,
        "$",
        (
            "format",
            "format_version",
            "tool_version",
            "rulebook_version",
            "created",
            "description",
            "profile",
            "answers",
            "probes",
            "facts",
            "excerpts",
            "case_folder",
        ),
        ("format_version", "facts"),
    )
    if obj.get("format", BUNDLE_FORMAT) != BUNDLE_FORMAT:
        raise r.fail("$.format", f"not an evidence bundle (format {obj.get('format')!r})")
    version = obj["format_version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise r.fail("$.format_version", f"expected an integer, got {_json_type(version)}")
    if version > BUNDLE_VERSION or version < 1:
        raise r.fail("$.format_version", f"unsupported bundle version {version} (this tool reads 1..{BUNDLE_VERSION})")
    facts = tuple(parse_fact(f, f"$.facts[{i}]", r) for i, f in enumerate(bounded_facts(r, obj["facts"])))
    probes = []
    for i, p in enumerate(r.array(obj.get("probes", []), "$.probes")):
        jp = f"$.probes[{i}]"
        p = r.obj(p, jp)
        r.keys(p, jp, ("probe", "status", "reason", "check", "kinds", "elapsed", "notes"), ("probe", "status"))
        try:
            status = ProbeStatus(p["status"])
        except ValueError:
            raise r.fail(f"{jp}.status", f"unknown probe status {p['status']!r}") from None
        kinds_raw = r.array(p.get("kinds", []), f"{jp}.kinds")
        kinds = tuple(r.text(k, f"{jp}.kinds[{j}]") or "" for j, k in enumerate(kinds_raw))
        elapsed = p.get("elapsed")
        if elapsed is not None and (isinstance(elapsed, bool) or not isinstance(elapsed, (int, float))):
            raise r.fail(f"{jp}.elapsed", "expected a number")
        notes_raw = r.array(p.get("notes", []), f"{jp}.notes")
        notes = tuple(r.text(n, f"{jp}.notes[{j}]") or "" for j, n in enumerate(notes_raw))
        probes.append(
            ProbeRun(
                r.text(p["probe"], f"{jp}.probe") or "",
                status,
                r.text(p.get("reason", ""), f"{jp}.reason") or "",
                r.text(p.get("check"), f"{jp}.check", optional=True),
                kinds,
                elapsed,
                notes,
            )
        )
    answers = r.obj(obj.get("answers", {}), "$.answers")
    for key, value in answers.items():
        r.text(value, f"$.answers.{key}")
    excerpts = r.obj(obj.get("excerpts", {}), "$.excerpts")
    for key, value in excerpts.items():
        r.text(value, f"$.excerpts.{key}")
    return EvidenceBundle(
        facts=facts,
        probes=tuple(probes),
        profile=r.obj(obj.get("profile", {}), "$.profile"),
        answers=answers,
        excerpts=excerpts,
        tool_version=r.text(obj.get("tool_version", "unknown"), "$.tool_version") or "unknown",
        rulebook_version=r.text(obj.get("rulebook_version"), "$.rulebook_version", optional=True),
        created=r.text(obj.get("created", now_iso()), "$.created") or "",
        description=r.text(obj.get("description", ""), "$.description") or "",
        case_folder=r.obj(obj.get("case_folder", {}), "$.case_folder"),
    )


def bounded_facts(r: JsonReader, raw: Any) -> list[Any]:
    """The `$.facts` array, refused when it holds more than `bounds.MAX_BUNDLE_FACTS` facts."""
    facts = r.array(raw, "$.facts")
    if len(facts) > MAX_BUNDLE_FACTS:
        raise r.fail(
            "$.facts",
            f"{len(facts):,} facts: more than the {MAX_BUNDLE_FACTS:,} a bundle may hold "
            "(diagnose.bounds.MAX_BUNDLE_FACTS); split the evidence",
        )
    return facts


def load_bundle(path: Path | str) -> EvidenceBundle:
    """Load and shape-check a bundle. Callers then check fact types with `FactKinds.check_bundle`."""
    return bundle_from_json(load_json(path), str(path))
