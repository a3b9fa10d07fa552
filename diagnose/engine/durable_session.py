"""Sessions on durable_rules: the only code that calls the `durable_rules_engine` C module.

It runs where the engine runs: in the engine worker process (`diagnose.engine.worker`), or in the
tool's own process when isolation is off. It imports only the standard library and
`diagnose.errors`, so a spawned worker starts quickly, and it takes the rulebook already compiled
(`diagnose.engine.program.compile_program`): JSON ruleset documents, plain data that crosses a pipe.

The runtime workarounds for durable_rules 2.0.28 (see diagnose/engine/durable.py for the whole list):
the gate fact asserted after all evidence, the sentinel rule so that `delete_state` is safe, our own
JSON writer (no exponent without a '.'), one fact per assert with a unique id and a retry on a
spurious duplicate, one sid per diagnosis and partition, deleted at the end, and one lock around
every C call.
"""

from __future__ import annotations

import itertools
import json
import threading
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diagnose.errors import EngineError, EngineUnavailable

GATE_KIND = "$gate"
GATE_ALIAS = "gate_"
SENTINEL = "$sentinel"
_RESULT_OBSERVED = 2  # 1 = not handled (no condition observes the fact): fine, it cannot matter
_LOCK = threading.RLock()  # the C module has no locks of its own
_names = itertools.count()

# (index of the fact in the caller's list, its fields with kind and subject)
Message = typing.Tuple[int, typing.Dict[str, Any]]
RawFiring = typing.Tuple[str, typing.Tuple[typing.Tuple[str, int], ...]]  # (rule id, ((binding, fact index), ...))


@dataclass(frozen=True)
class PartitionSpec:
    """One compiled partition of the rulebook: the durable ruleset document (JSON), the map from
    durable rule names to our rule ids, and the fact kinds its rules read."""

    document: str
    names: dict[str, str]
    kinds: frozenset[str]


# ----------------------------------------------------------------------------------- JSON writing


def _number(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    text = repr(value)
    if "e" in text or "E" in text:
        mantissa, _, exponent = text.lower().partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        text = f"{mantissa}e{exponent}"
    return text


def dumps(value: Any) -> str:
    """JSON the C parser accepts: like json.dumps, but floats always carry a '.' in the mantissa."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps_flat(message: dict[str, Any]) -> str:
    """`dumps` for a flat fact message, at the speed of the C JSON encoder: only floats need our writer."""
    floats = [k for k, v in message.items() if type(v) is float]
    if not floats:
        return json.dumps(message, ensure_ascii=False)
    rest = {k: v for k, v in message.items() if type(v) is not float}
    extra = ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_number(message[k])}" for k in floats)
    return (
        (json.dumps(rest, ensure_ascii=False)[:-1] + ("," if rest else "") + extra + "}") if rest else "{" + extra + "}"
    )


# -------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class _Partition:
    handle: int
    names: dict[str, str]
    kinds: frozenset[str]


class Evaluator:
    """The compiled rulebook loaded into durable_rules; `evaluate` runs one diagnosis."""

    def __init__(self, program: Sequence[PartitionSpec]) -> None:
        try:
            import durable_rules_engine
        except ImportError as exc:  # e.g. Python 3.13+: undefined symbol PyEval_CallObject
            raise EngineUnavailable(
                f"the rule engine (durable_rules) cannot run here: {import_failure(exc)} "
                f"(--engine reference, or auto, uses the reference evaluator)",
                import_failure(exc),
            ) from None

        self._c = durable_rules_engine
        self._sids = itertools.count()
        self.partitions: list[_Partition] = []
        with _LOCK:
            for spec in program:
                try:
                    handle = self._c.create_ruleset(f"diagnose{next(_names)}", spec.document)
                except Exception as exc:  # the C module raises its own error type
                    raise EngineError(f"durable_rules rejected the compiled rulebook: {exc}") from None
                self.partitions.append(_Partition(handle, spec.names, spec.kinds))

    def evaluate(self, messages: Sequence[Message]) -> list[RawFiring]:
        firings: list[RawFiring] = []
        with _LOCK:
            for part in self.partitions:
                sid = f"d{next(self._sids)}"
                mine = (
                    messages if len(self.partitions) == 1 else [(i, m) for i, m in messages if m["kind"] in part.kinds]
                )
                found, error = self._session(part, sid, mine)
                # Safe only because the sentinel's action has completed in this sid (see module doc).
                self._c.delete_state(part.handle, sid)
                if error:
                    raise EngineError(error)
                firings.extend(found)
        return firings

    def _assert(self, part: _Partition, sid: str, message: dict[str, Any], fact_id: str) -> int:
        """Assert one fact; returns the state handle. A fact no condition observes is simply not stored."""
        for attempt in range(8):
            message["sid"] = sid
            message["id"] = fact_id if attempt == 0 else f"{fact_id}~{attempt}"
            result = self._c.assert_fact(part.handle, dumps_flat(message))
            code = result[0] if isinstance(result, tuple) else 0
            if code == _RESULT_OBSERVED:  # a 32-bit id-hash collision (#376): try another id
                continue
            return int(result[1]) if isinstance(result, tuple) else int(result)
        raise EngineError(f"durable_rules kept rejecting fact {fact_id} as a duplicate")

    def _session(self, part: _Partition, sid: str, messages: Sequence[Message]) -> tuple[list[RawFiring], str | None]:
        """Assert the evidence, then the gate, and collect the firings. Always reaches the gate, so the
        sentinel completes and the sid can be deleted, even when a fact was rejected."""
        error: str | None = None
        for index, message in messages:  # fresh dicts for each run: sid and id are written into them
            try:
                self._assert(part, sid, message, f"f{index}")
            except Exception as exc:
                error = f"durable_rules rejected fact #{index} ({message.get('kind')}): {exc}"
                break
        state = self._assert(part, sid, {"kind": GATE_KIND}, "gate")
        firings: dict[RawFiring, None] = {}
        sentinel_fired = False
        result = self._c.start_action_for_state(part.handle, state)
        raw = result[1] if result else None
        while raw:
            for name, bound in json.loads(raw).items():
                if name == SENTINEL:
                    sentinel_fired = True
                    continue
                key = tuple(sorted((alias, _index(fact["id"])) for alias, fact in bound.items() if alias != GATE_ALIAS))
                if distinct(key):
                    firings.setdefault((part.names[name], key), None)
            raw = self._c.complete_and_start_action(part.handle, state)
        if not sentinel_fired:
            raise EngineError("durable_rules session ended without its sentinel firing")
        return list(firings), error


def import_failure(exc: ImportError) -> str:
    """Why durable_rules does not import, in one line."""
    import platform

    text = " ".join(str(exc).split()) or "no message"
    return f"durable_rules does not import on Python {platform.python_version()}: {type(exc).__name__}: {text[:300]}"


def distinct(bindings: Sequence[tuple[str, int]]) -> bool:
    """No fact fills two bindings of the combination. The rules are compiled without durable's own
    distinct check (it also hides bound facts from `not` conditions; see diagnose/engine/durable.py)."""
    return len({index for _, index in bindings}) == len(bindings)


def _index(fact_id: str) -> int:
    return int(fact_id[1:].partition("~")[0])
