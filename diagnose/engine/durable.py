"""The durable_rules adapter. With `durable_session` (the only module that calls the C engine) and
`worker` (the process the engine runs in), it is the only code that knows about `durable`.

durable_rules 2.0.28 has defects that bite (see shared/knowledge/durable-rules-notes.md); each is
handled here, and each has a conformance test in tests/engine/:

* Negation depends on assertion order (#402), and there is no truth maintenance: every rule starts
  with a *gate* condition, and the gate fact is asserted after all evidence, so nothing is matched
  before all evidence is in.
* Type-blind comparisons (`"50" > 100` is true, `1 == "1"`): facts are checked against the declared
  fact kinds and mistyped values are dropped with a warning before they reach the engine; rules are
  type-checked at load time.
* Exponent floats (`1e-05` is a parse error 204, and silently truncates a batch): our own JSON
  writer always puts a `.` in the mantissa, and facts are asserted one at a time.
* False duplicate-fact rejections (content hashing ignores type; 32-bit id hash collisions, #376):
  every fact gets a unique `id`, and a spurious `MessageObservedException` is retried with a new id.
* The `delete_state` crash on a sid where no action completed: a sentinel rule on the gate alone
  fires in every session, so an action has always completed before `delete_state`.
* The global host and its timer threads: `durable.lang` and `Host` are never used; the C functions
  are called directly, so there is no global registry and no background thread.
* Thread safety: the C module has no locks; every call goes through one process-wide lock.
* Crashes (SIGSEGV in #381 and in `delete_state`, aborts from heap corruption): the engine runs in
  a worker process (diagnose/engine/worker.py), so a crash becomes an EngineError with one clear
  line instead of taking the tool down. The worker gets the compiled ruleset documents once, then
  facts per diagnosis, and returns firings.
* The 1024-live-sid limit and the per-ruleset leaks: each rulebook is loaded into durable once per
  worker (workers are kept per compiled rulebook, and recycled after many diagnoses); one sid per
  diagnosis, deleted when the diagnosis ends.
* Found here, not in the notes: negation does not see a fact bound to a positive condition. By
  default durable_rules keeps a rule's combination *distinct* (no fact fills two of its
  conditions), and that check also hides the facts already bound from a `not` condition, so
  `cap: reset_by_server > 0` with `not: refused > 0` fired on one fact that has both (and only when
  the `not` came after `cap`). The rule language says a `not` holds when no fact at all matches. So
  every rule is compiled with `"dist": 0` (the negation sees every fact), and distinctness of the
  positive bindings is enforced on the firings instead (`durable_session.distinct`). (A `$neq`
  join on `id` would do it inside the engine, but durable_rules crashes on it.)
* Found here, not in the notes: the alpha network is walked with a fixed stack of 64 nodes
  (`MAX_STACK_SIZE` in events.c), so a fact that passes the tests of more than about 64 sibling
  conditions fails with error 303 (e.g. 80 rules `status64_count > N` and a large count). The
  rulebook is therefore split into partitions with at most PARTITION_BUDGET conditions per fact
  kind; each partition is its own ruleset and gets only the facts of the kinds it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from diagnose.engine import EngineResult, Firing, usable_attrs, worker
from diagnose.engine.durable_session import Message, dumps, dumps_flat
from diagnose.engine.program import Program, compile_program, compile_rules, glob_to_pattern, partition
from diagnose.facts import Fact
from diagnose.kinds import FactKinds, fact_kinds
from diagnose.rulebook.model import Rulebook

__all__ = [
    "DurableEngine",
    "Program",
    "compile_program",
    "compile_rules",
    "dumps",
    "dumps_flat",
    "glob_to_pattern",
    "partition",
]


class DurableEngine:
    """The production engine. Facts are checked and typed here; durable_rules itself runs in the
    engine worker (see diagnose/engine/worker.py: a forked or spawned process, or this one when
    DIAGNOSE_ENGINE_WORKER=none)."""

    name = "durable"

    def __init__(self, rulebook: Rulebook, kinds: FactKinds | None = None) -> None:
        self.kinds = kinds or fact_kinds()
        self.used = rulebook.kinds()
        self.program = compile_program(rulebook, self.kinds)
        self._worker = worker
        worker.prepare(self.program)  # a worker starts loading the rules while the caller goes on

    def run(self, facts: Sequence[Fact]) -> EngineResult:
        warnings: list[str] = []
        unused: set[str] = set()
        messages: list[Message] = []
        for index, fact in enumerate(facts):
            if fact.kind not in self.used:
                unused.add(fact.kind)  # durable raises MessageNotHandled for kinds no rule observes
                continue
            message: dict[str, Any] = usable_attrs(fact, self.kinds, warnings)
            message["kind"] = fact.kind
            message["subject"] = fact.subject
            messages.append((index, message))
        raw = self._worker.evaluate(self.program, messages)
        return EngineResult(
            tuple(Firing(rule_id, bindings) for rule_id, bindings in raw), tuple(warnings), tuple(sorted(unused))
        )
