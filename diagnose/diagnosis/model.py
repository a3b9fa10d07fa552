"""What a diagnosis is: the verdict, the causes found (ranked), every rule's outcome, the questions
worth asking, and the evidence they rest on. Plain frozen dataclasses; the work is done in
`availability`, `findings`, `explain` and `questions`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from diagnose.diagnosis.ranking import ESTABLISHED, is_ruled_out
from diagnose.engine import Firing
from diagnose.facts import EvidenceBundle, Fact
from diagnose.rulebook.model import Cause, Question, Rule, Rulebook, Verdict

# The kind of fact that shows the evidence a `diagnose --OPTION` in a cause's gather item asks for
# was given (a probe that delivers it ran, or facts of it are in the bundle).
GATHERED_BY = {
    "--log": "log.status_summary",
    "--capture": "capture.teardown_summary",
    "--services-export": "service.state",
    "--profile": "dns.resolution",
}
_OPTION = re.compile(r"diagnose[^)]*?(--[a-z][a-z-]*)")


@dataclass(frozen=True)
class RuleSupport:
    rule: Rule
    certainty: float
    explain: str
    matches: tuple[tuple[tuple[str, int], ...], ...]  # per firing: (binding, fact index)
    firings: int


@dataclass(frozen=True)
class CauseFinding:
    cause: Cause
    certainty: float
    support: tuple[RuleSupport, ...]
    evidence: tuple[int, ...]  # fact indices, in first-cited order


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    status: str  # fired | silent | unknown
    missing: tuple[str, ...] = ()
    why_not: str = ""  # for a silent rule: the first condition that failed, and on which fact

    @property
    def reason(self) -> str:
        if self.status == "unknown":
            return "needs evidence that was not gathered: " + ", ".join(self.missing)
        if self.status == "fired":
            return "its conditions held"
        return self.why_not or "its conditions did not hold on the evidence gathered"


@dataclass(frozen=True)
class AnswerEffect:
    choice: str
    verdict: Verdict
    top: str | None
    certainty: float


@dataclass(frozen=True)
class QuestionPrompt:
    question: Question
    weight: float
    rules: tuple[str, ...]
    causes: tuple[str, ...]
    effects: tuple[AnswerEffect, ...] = ()


@dataclass(frozen=True)
class Diagnosis:
    verdict: Verdict
    causes: tuple[CauseFinding, ...]  # ranked (ranking.order), the ruled-out ones last
    outcomes: tuple[RuleOutcome, ...]
    questions: tuple[QuestionPrompt, ...]
    facts: tuple[Fact, ...]
    bundle: EvidenceBundle
    rulebook: Rulebook
    warnings: tuple[str, ...]
    unused_kinds: tuple[str, ...]
    engine: str
    firings: tuple[Firing, ...] = ()
    engine_reason: str = ""  # why that engine ran (diagnose.engine.choose_engine)

    @property
    def ranked(self) -> tuple[CauseFinding, ...]:
        """The ranked causes: the one that decided the verdict first (see diagnose.diagnosis.ranking.order)."""
        return tuple(c for c in self.causes if not is_ruled_out(c.certainty))

    @property
    def decided_by(self) -> CauseFinding | None:
        """The cause that decided the verdict; None when no cause was established."""
        ranked = self.ranked
        return ranked[0] if ranked and ranked[0].certainty >= ESTABLISHED else None

    @property
    def ruled_out(self) -> tuple[CauseFinding, ...]:
        """The causes ruled out or weakened to 0 or below: reported apart, never ranked."""
        return tuple(c for c in self.causes if is_ruled_out(c.certainty))

    def gather(self, finding: CauseFinding) -> tuple[str, ...]:
        """The cause's "what to gather next", less what was given: an item naming a `diagnose
        --OPTION` whose evidence is in the bundle (GATHERED_BY) is not asked for again."""
        kinds = self.bundle.available_kinds() | {f.kind for f in self.facts}
        return tuple(
            item
            for item in finding.cause.gather
            if not any(GATHERED_BY.get(option) in kinds for option in _OPTION.findall(item))
        )

    @property
    def notes(self) -> tuple[str, ...]:
        """Lines every report shows near its verdict: how the evidence was read where that can change
        it (logs and captures in local time matched without --tz)."""
        return tuple(
            dict.fromkeys(
                str(f.attrs["clock_note"])
                for f in self.facts
                if f.kind == "capture.status64_match" and f.get("clock_note")
            )
        )

    @property
    def unknowns(self) -> tuple[RuleOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "unknown")
