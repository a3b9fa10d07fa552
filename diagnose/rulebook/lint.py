"""`diagnose rules lint`: the rule base checked as a whole, with severities.

What the loaders refuse (a bad rule, an unknown fact field, a bad check or endpoint table) is an
error. Across rules, checks, fact kinds and the cause and question catalogues:

    error    a check lists a fact kind that is not declared
    warning  a rule reads a fact kind that no check produces (nor the profile or the interview)
    warning  a cause no rule concludes; a question no rule asks
    warning  a rule reads the answer to a question that is not in the catalogue, or a choice it does not offer
    warning  a check lists a fact kind its probe does not produce
    warning  a fact kind names a probe that does not exist
    warning  a rule compares the profile's exchange_version or published with a value the endpoint table
             (checks/exchange-endpoints.yaml) does not know
    info     a declared fact kind no rule reads

Each finding names file:line. Only errors fail the lint, unless `--strict` makes warnings fail too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from diagnose.compat import StrEnum
from diagnose.errors import DiagnoseError
from diagnose.kinds import KINDS_DIR, FactKinds
from diagnose.rulebook.model import Binding, Rule, Rulebook

# fact kinds the program makes itself, not a probe: the site profile and the interview's answers
SUPPLIED = frozenset({"profile", "questions"})
ANSWER = "answer"
SITE = "site.profile"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    where: str  # file:line
    message: str

    def __str__(self) -> str:
        return f"{self.where + ': ' if self.where else ''}{self.severity.value}: {self.message}"


@dataclass(frozen=True)
class CheckKinds:
    """What lint needs of one check: where it is, its probe and the kinds it says it produces."""

    id: str
    probe: str
    kinds: tuple[str, ...]
    where: str


def errors(problems: Iterable[DiagnoseError]) -> list[Finding]:
    return [Finding(Severity.ERROR, e.where or "", e.message) for e in problems]


def lint(
    rulebook: Rulebook,
    kinds: FactKinds,
    checks: Sequence[CheckKinds],
    probes: Collection[str],
    site: Mapping[str, Collection[str]],
    kinds_dir: Path = KINDS_DIR,
) -> list[Finding]:
    """The findings across the rule base, sorted by place. `probes` are the probe names; `site` the values
    the endpoint table knows for site.profile fields (exchange_version, published)."""
    out: list[Finding] = []
    lines = _kind_lines(kinds_dir)
    for kind in kinds.kinds.values():
        if kind.probe not in probes and kind.probe not in SUPPLIED:
            out.append(
                Finding(
                    Severity.WARNING,
                    lines.get(kind.name, str(kinds_dir)),
                    f"fact kind {kind.name!r} names probe {kind.probe!r}, which is not a probe",
                )
            )
    produced: set[str] = {k.name for k in kinds.kinds.values() if k.probe in SUPPLIED}
    for check in checks:
        for name in check.kinds:
            if name not in kinds:
                out.append(
                    Finding(
                        Severity.ERROR,
                        check.where,
                        f"check {check.id!r} lists fact kind {name!r}, "
                        "which is not declared (diagnose/factkinds/*.yaml)",
                    )
                )
                continue
            produced.add(name)
            if kinds[name].probe != check.probe:
                out.append(
                    Finding(
                        Severity.WARNING,
                        check.where,
                        f"check {check.id!r} runs probe {check.probe!r} but lists {name!r}, which "
                        f"probe {kinds[name].probe!r} produces",
                    )
                )
    read: set[str] = set()
    concluded = {rule.conclude.cause for rule in rulebook.rules}
    asked: set[str] = set()
    for rule in rulebook.rules:
        for binding in rule.when.bindings():
            read.add(binding.kind)
            where = f"{rule.path}:{binding.line}"
            if binding.kind not in produced:
                out.append(
                    Finding(
                        Severity.WARNING,
                        where,
                        f"rule {rule.id!r} reads {binding.kind!r}, which no check produces (no check "
                        f"lists it in its kinds; probe {kinds[binding.kind].probe!r} makes it)",
                    )
                )
            if binding.kind == ANSWER:
                asked |= _answers(rule, binding, rulebook, out)
            if binding.kind == SITE:
                _site_values(rule, binding, site, out)
    for cause in rulebook.causes.values():
        if cause.id not in concluded:
            out.append(Finding(Severity.WARNING, f"{cause.path}:1", f"cause {cause.id!r} is concluded by no rule"))
    for question in rulebook.questions.values():
        if question.id not in asked:
            out.append(
                Finding(
                    Severity.WARNING,
                    f"{question.path}:1",
                    f"question {question.id!r} is asked by no rule (no rule reads its answer)",
                )
            )
    for name in sorted(set(kinds.kinds) - read):
        out.append(Finding(Severity.INFO, lines.get(name, str(kinds_dir)), f"fact kind {name!r} is read by no rule"))
    return sorted(out, key=_place)


def _answers(rule: Rule, binding: Binding, rulebook: Rulebook, out: list[Finding]) -> set[str]:
    """The questions whose answer `binding` reads (an `eq` on subject), with the findings on them."""
    subjects = [t.value for t in binding.tests if t.field == "subject" and t.op == "eq" and isinstance(t.value, str)]
    values = [
        v
        for t in binding.tests
        if t.field == "value" and t.op in ("eq", "in")
        for v in (t.value if isinstance(t.value, tuple) else (t.value,))
        if isinstance(v, str)
    ]
    for subject in subjects:
        question = rulebook.questions.get(subject)
        where = f"{rule.path}:{binding.line}"
        if question is None:
            out.append(
                Finding(
                    Severity.WARNING,
                    where,
                    f"rule {rule.id!r} reads the answer to {subject!r}, which is not a question",
                )
            )
            continue
        for value in values:
            if value not in question.choices:
                out.append(
                    Finding(
                        Severity.WARNING,
                        where,
                        f"rule {rule.id!r} reads answer {value!r} to {subject!r}, which is not one of "
                        f"its choices ({', '.join(question.choices)})",
                    )
                )
    return set(subjects)


def _site_values(rule: Rule, binding: Binding, site: Mapping[str, Collection[str]], out: list[Finding]) -> None:
    """Values compared with site.profile fields that the endpoint table does not know (a typo, or a
    version the table lacks)."""
    for test in binding.tests:
        known = site.get(test.field)
        if known is None or test.op not in ("eq", "ne", "in", "contains"):
            continue
        for value in test.value if isinstance(test.value, tuple) else (test.value,):
            if isinstance(value, str) and value not in known:
                out.append(
                    Finding(
                        Severity.WARNING,
                        f"{rule.path}:{test.line or binding.line}",
                        f"rule {rule.id!r} compares {SITE}.{test.field} with {value!r}, which the "
                        f"endpoint table does not know ({', '.join(known)})",
                    )
                )


def _kind_lines(directory: Path) -> dict[str, str]:
    """`file:line` of each fact kind's declaration (a top-level key in a factkinds file)."""
    out: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
            if line and not line[0].isspace() and not line.startswith("#") and line.rstrip().endswith(":"):
                out.setdefault(line.rstrip()[:-1].strip("'\""), f"{path}:{number}")
    return out


def _place(finding: Finding) -> tuple[str, int, int, str]:
    """Sorted by file and line, errors first at one place."""
    path, _, line = finding.where.rpartition(":")
    rank = list(Severity).index(finding.severity)
    return (path, int(line), rank, finding.message) if line.isdigit() else (finding.where, 0, rank, finding.message)


def counts(findings: Iterable[Finding]) -> dict[Severity, int]:
    out = {severity: 0 for severity in Severity}
    for finding in findings:
        out[finding.severity] += 1
    return out
