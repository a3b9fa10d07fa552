"""Golden snapshots: the JSON `diagnose` writes for every bundled example and corpus case, kept under
tests/golden/ so a restructuring can prove that behaviour did not change.

    python scripts/golden.py            compare (exit 1 and a short diff on any difference)
    python scripts/golden.py --update   regenerate after an intended change, then review `git diff tests/golden`

Each case runs the real CLI in a subprocess from this checkout:
- `diagnose run --example NAME --format json` and `diagnose collect --example NAME` (the bundle);
- every corpus capture, TMG log and IIS log under ../shared/corpus through
  `diagnose run --offline --no-input --capture/--log/--proxy-log FILE --format json` (skipped when the corpus
  is absent; their snapshots stay);
- the `diagnose rules test` summary line.
Only what legitimately varies between two runs is normalised: wall-clock time stamps (`created`, a fact's
`provenance.time`), durations (`elapsed`), the tool version, the engine chosen and the engines that ran the
rule tests (both engines are held to the same results by tests/engine/test_differential.py; durable_rules
is absent on some Pythons), and the checkout's and the corpus's absolute paths.
tests/test_golden.py runs the comparison in the test suite; tests/test_wheel.py compares the wheel's file
list with tests/golden/wheel-files.txt (`--update --wheel` rebuilds it).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
CORPUS = REPO.parent / "shared" / "corpus"
WHEEL_FILES = GOLDEN / "wheel-files.txt"
UPDATE_HINT = "python scripts/golden.py --update"

# keys whose values vary from run to run; replaced by a placeholder wherever they occur
_VARYING = {
    "created": "<time>",
    "elapsed": "<elapsed>",
    "tool_version": "<version>",
    "engine": "<engine>",
    "engine_reason": "<engine>",
}
# corpus files by the option that reads them
_CORPUS_INPUTS = (
    ("pcaps", "--capture", ("*.pcap", "*.pcapng")),
    ("tmg-logs", "--log", ("*.w3c", "*.txt")),
    ("iis-logs", "--proxy-log", ("*.log",)),
)


@dataclass(frozen=True)
class Case:
    """One snapshot: its file name under tests/golden and the CLI arguments that produce it."""

    name: str
    args: tuple[str, ...]
    needs_corpus: bool = False
    bundle: bool = False  # `collect`: the JSON is the bundle written to -o, not stdout
    text: bool = False  # plain text output (the rules test summary), not JSON


def example_names() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "examples").glob("*/example.yaml"))


def cases(corpus: Path = CORPUS) -> list[Case]:
    found = []
    for name in example_names():
        found.append(Case(f"run-example-{name}.json", ("run", "--example", name, "--format", "json")))
        found.append(Case(f"collect-example-{name}.json", ("collect", "--example", name), bundle=True))
    for folder, option, patterns in _CORPUS_INPUTS:
        files = sorted({f for pattern in patterns for f in (corpus / folder).glob(pattern)})
        for path in files:
            found.append(
                Case(
                    f"corpus-{folder}-{path.name}.json",
                    ("run", "--offline", "--no-input", option, str(path), "--format", "json"),
                    needs_corpus=True,
                )
            )
    found.append(Case("rules-test.txt", ("rules", "test"), text=True))
    return found


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIAGNOSE_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["NO_COLOR"] = "1"
    env["DIAGNOSE_NETWORK"] = "loopback"
    return env


def _replace_paths(text: str, corpus: Path) -> str:
    for root, mark in ((corpus.resolve(), "<corpus>"), (corpus, "<corpus>"), (REPO, "<repo>")):
        text = text.replace(str(root), mark)
    return text


def normalise(data: Any, corpus: Path = CORPUS) -> Any:
    """`data` with run-to-run variation replaced by placeholders (see the module's docstring)."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            key = _replace_paths(key, corpus)
            if key in _VARYING:
                out[key] = _VARYING[key]
            elif key == "provenance" and isinstance(value, dict) and "time" in value:
                out[key] = normalise({**value, "time": "<time>"}, corpus)
            else:
                out[key] = normalise(value, corpus)
        return out
    if isinstance(data, list):
        return [normalise(v, corpus) for v in data]
    if isinstance(data, str):
        return _replace_paths(data, corpus)
    return data


_TIMING = re.compile(r"\bin \d+(\.\d+)?\s*m?s\b")
# which engines ran the rule tests (both, or the reference evaluator alone where durable_rules is absent)
_ENGINES = re.compile(r"\(each through [^\n]*\)$", re.MULTILINE)


def produce(case: Case, corpus: Path = CORPUS) -> str:
    """The normalised snapshot text of one case, from a fresh run of the CLI."""
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        args = list(case.args)
        bundle = Path(tmp) / "bundle.json"
        if case.bundle:
            args += ["-o", str(bundle)]
        done = subprocess.run(
            [sys.executable, "-m", "diagnose", *args], capture_output=True, text=True, cwd=tmp, env=_env(), timeout=300
        )
        if done.returncode not in (0, 1):  # 1: a cause reached --fail-on (not used here) or rule tests failed
            raise RuntimeError(
                f"{case.name}: diagnose {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
            )
        if case.text:
            text = _TIMING.sub("in <elapsed>", _replace_paths(done.stdout, corpus))
            return _ENGINES.sub("(<engines>)", text).rstrip("\n") + "\n"
        raw = bundle.read_text(encoding="utf-8") if case.bundle else done.stdout
    return json.dumps(normalise(json.loads(raw), corpus), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def difference(case: Case, corpus: Path = CORPUS, limit: int = 40) -> str | None:
    """None when the case's output equals its snapshot, else a short unified diff (or a missing-file note)."""
    path = GOLDEN / case.name
    now = produce(case, corpus)
    if not path.is_file():
        return f"{case.name}: no snapshot yet; run `{UPDATE_HINT}`"
    before = path.read_text(encoding="utf-8")
    if before == now:
        return None
    diff = list(
        difflib.unified_diff(before.splitlines(), now.splitlines(), f"golden/{case.name}", "now", n=2, lineterm="")
    )
    more = f"\n... {len(diff) - limit} more diff lines" if len(diff) > limit else ""
    return (
        f"{case.name} differs from its snapshot (if the change is intended: `{UPDATE_HINT}`, "
        f"then review `git diff tests/golden`):\n" + "\n".join(diff[:limit]) + more
    )


def wheel_names(wheel: Path) -> list[str]:
    """The wheel's file list, without what varies by version and platform (the compiled modules'
    suffixes, the dist-info folder's version)."""
    names = set()
    for name in zipfile.ZipFile(wheel).namelist():
        name = re.sub(r"^(\w+)-[^/-]+\.dist-info/", r"\1-<version>.dist-info/", name)
        name = re.sub(r"\.(cpython|pypy)[^/]*\.(so|pyd)$|\.(so|pyd)$", ".<ext>", name)
        names.add(name)
    return sorted(names)


def build_wheel(out: Path) -> Path:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0:
        raise RuntimeError(f"building the wheel failed: {built.stderr.strip()[-2000:]}")
    (wheel,) = out.glob("*.whl")
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite the snapshots from this checkout")
    parser.add_argument("--wheel", action="store_true", help="also build the wheel and snapshot its file list")
    options = parser.parse_args(argv)
    have_corpus = CORPUS.is_dir()
    failed = 0
    for case in cases():
        if case.needs_corpus and not have_corpus:
            continue
        if options.update:
            GOLDEN.mkdir(parents=True, exist_ok=True)
            (GOLDEN / case.name).write_text(produce(case), encoding="utf-8")
            print(f"wrote tests/golden/{case.name}")
            continue
        diff = difference(case)
        if diff:
            failed += 1
            print(diff, file=sys.stderr)
    if options.wheel:
        with tempfile.TemporaryDirectory(prefix="golden-wheel-") as tmp:
            names = "\n".join(wheel_names(build_wheel(Path(tmp)))) + "\n"
        if options.update:
            WHEEL_FILES.write_text(names, encoding="utf-8")
            print(f"wrote {WHEEL_FILES.relative_to(REPO)}")
        elif not WHEEL_FILES.is_file() or WHEEL_FILES.read_text(encoding="utf-8") != names:
            failed += 1
            print(f"the wheel's file list differs from {WHEEL_FILES.relative_to(REPO)}", file=sys.stderr)
    if not have_corpus:
        print(f"note: {CORPUS} is absent; corpus cases not checked", file=sys.stderr)
    if failed:
        print(f"{failed} snapshot(s) differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
