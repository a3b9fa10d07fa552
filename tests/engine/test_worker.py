"""The engine worker: durable_rules runs in a process of its own. Real crashes in the worker (an
abort, a NULL dereference, an exit, a hang, provoked by the DIAGNOSE_TEST_ENGINE_FAULT hook) must
reach the user as one error line and exit 3, leave no process behind, and results must be the same
whichever way the engine runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diagnose.cli.common import load_rules
from diagnose.diagnosis import analyze
from diagnose.engine import create_engine, worker
from diagnose.errors import EngineError
from diagnose.facts import EvidenceBundle, load_bundle, make_fact
from diagnose.report import render
from diagnose.ruletests import run_rule_tests
from tests.conftest import REPO, busy_evidence, run_cli
from tests.rulebook_util import rulebook

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the crash checks read /proc and POSIX signals")

EXAMPLES = ["seed", "dns-mismatch", "fba-stopped"]
MODES = ["fork", "spawn"]
ONE_LINE = re.compile(r"diagnose: error: the rule engine \(durable_rules\) (.+)")


def gone(pid: int, wait: float = 10.0) -> bool:
    """True once process `pid` no longer exists (waits for it a little)."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.02)
    return False


def processes() -> list[tuple[int, list[str]]]:
    """(pid, the fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / "stat").read_text().rsplit(")", 1)[1].split()))
            except OSError:
                continue
    return found


def in_session(sid: int) -> list[int]:
    return [pid for pid, fields in processes() if int(fields[3]) == sid and fields[0] != "Z"]


def children_of(parent: int) -> list[int]:
    return [pid for pid, fields in processes() if int(fields[1]) == parent]


def threshold_book(root: Path, above: int):
    """A one-rule rulebook: a status summary with more than `above` Status 64 entries."""
    return rulebook(
        root,
        {
            "r": f"""\
        id: r
        title: more than {above}
        status: experimental
        when:
          log: {{kind: log.status_summary, status64_count: {{gt: {above}}}}}
        conclude: {{cause: c1, certainty: 0.5, explain: "x"}}
        """
        },
    )


# ------------------------------------------------------------------------ crashes through the CLI


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "fault,expected",
    [
        ("segfault", r"crashed with signal 11 \(SIGSEGV\) while evaluating (\d[\d,]*) facts"),
        ("abort", r"crashed with signal 6 \(SIGABRT\) while evaluating (\d[\d,]*) facts"),
        ("exit", r"exited with code 70 while evaluating (\d[\d,]*) facts"),
        ("abort@start", r"crashed with signal 6 \(SIGABRT\) while loading the rulebook \((\d[\d,]*) rules\)"),
    ],
)
def test_a_crash_in_the_engine_is_one_error_line_and_exit_3(mode, fault, expected):
    result = run_cli(
        "run", "--example", "seed", env={"DIAGNOSE_TEST_ENGINE_FAULT": fault, "DIAGNOSE_ENGINE_WORKER": mode}
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    said = ONE_LINE.fullmatch(lines[0])
    assert said, lines[0]
    count = re.fullmatch(expected, said.group(1))
    assert count, said.group(1)
    assert int(count.group(1).replace(",", "")) > 0
    assert "Traceback" not in result.stderr and "core dumped" not in result.stderr


def test_the_fact_count_in_the_message_is_what_the_engine_was_given(tmp_path):
    facts = [make_fact("log.status_summary", f"server:{i}", "t", status64_count=i) for i in range(1234)]
    bundle = tmp_path / "many.json"
    EvidenceBundle(facts=tuple(facts)).save(bundle)
    result = run_cli("analyze", str(bundle), "--no-input", env={"DIAGNOSE_TEST_ENGINE_FAULT": "segfault"})
    assert result.returncode == 3, result.stderr
    assert result.stderr == (
        "diagnose: error: the rule engine (durable_rules) crashed with signal 11 (SIGSEGV) "
        "while evaluating 1,234 facts\n"
    )


def test_a_hang_past_the_deadline_is_stopped(tmp_path):
    result = run_cli(
        "run", "--example", "seed", env={"DIAGNOSE_TEST_ENGINE_FAULT": "hang", "DIAGNOSE_ENGINE_TIMEOUT": "1"}
    )
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        r"diagnose: error: the rule engine \(durable_rules\) did not finish evaluating \d+ facts "
        r"within 1 s and was stopped \(DIAGNOSE_ENGINE_TIMEOUT sets the limit\)",
        lines[0],
    ), lines[0]


@pytest.mark.parametrize(
    "variable,value",
    [
        ("DIAGNOSE_ENGINE_WORKER", "thread"),
        ("DIAGNOSE_ENGINE_TIMEOUT", "-1"),
        ("DIAGNOSE_TEST_ENGINE_FAULT", "explode"),
    ],
)
def test_bad_settings_are_usage_errors(variable, value):
    result = run_cli("run", "--example", "seed", env={variable: value})
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and variable in result.stderr, result.stderr


@pytest.mark.parametrize("fault", ["", "segfault", "hang"])
def test_no_process_is_left_behind(fault):
    env = dict(
        os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", DIAGNOSE_TEST_ENGINE_FAULT=fault, DIAGNOSE_ENGINE_TIMEOUT="1"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "diagnose", "run", "--example", "seed"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    _, err = process.communicate(timeout=60)
    assert process.returncode == (3 if fault else 0), err
    leftovers = [pid for pid in in_session(process.pid) if not gone(pid)]
    assert leftovers == []


def test_ctrl_c_while_the_engine_works_exits_130_and_stops_the_worker(tmp_path):
    # `analyze`, not `run`: a run starts its worker before collecting, so on a busy machine the
    # Ctrl-C could land in collection instead (test_ctrl_c_during_collection_of_a_run_leaves_no_worker)
    pexpect = pytest.importorskip("pexpect")
    bundle = tmp_path / "seed.json"
    assert run_cli("collect", "--example", "seed", "-o", str(bundle)).returncode == 0
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", DIAGNOSE_TEST_ENGINE_FAULT="hang")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "diagnose", "analyze", str(bundle), "--no-input"],
        cwd=str(REPO),
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    workers: list[int] = []
    end = time.monotonic() + 20
    while not workers and time.monotonic() < end:
        workers = children_of(child.pid)
        time.sleep(0.05)
    assert workers, "the engine worker never started"
    time.sleep(0.5)  # the worker is now hanging on the request
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert (child.before or "").replace("^C", "").strip() == "diagnose: interrupted"  # the terminal echoes ^C
    assert all(gone(pid) for pid in workers)


def test_ctrl_c_during_collection_of_a_run_leaves_no_worker(tmp_path):
    # `run` starts the engine worker before collecting; Ctrl-C in collection reports on what was
    # gathered and leaves at once (os._exit): the worker must still go.
    pexpect = pytest.importorskip("pexpect")
    seed = REPO / "examples" / "seed"
    hanging = busy_evidence(tmp_path / "many-facts.json")  # a probe still busy when the logs are done
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "diagnose",
            "run",
            "--offline",
            "--no-input",
            "--profile",
            str(seed / "profile.yaml"),
            "--log",
            str(seed / "ISALOG_20110504_FWS_000.w3c"),
            "--evidence",
            str(hanging),
            "--progress",
        ],
        cwd=str(REPO),
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    child.expect(r"tmg-logs\s+complete")
    workers = children_of(child.pid)
    assert workers
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert "Verdict:" in (child.before or "")
    assert all(gone(pid) for pid in workers)
    assert [pid for pid in in_session(child.pid) if not gone(pid)] == []


# ---------------------------------------------------------------------------- in this process


def test_the_tool_process_never_loads_durable_rules():
    result = run_cli("run", "--example", "seed", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    assert "diagnose.engine.worker" in imported  # the listing works
    assert not {m for m in imported if m.startswith("durable")}


@pytest.fixture
def small_book(tmp_path):
    return threshold_book(tmp_path, -1)


@pytest.mark.parametrize("select", [True, False])
def test_crash_and_hang_in_process_leave_no_child(small_book, monkeypatch, select):
    monkeypatch.setattr(worker, "WAIT_WITH_SELECT", select)  # False: the timer used on Windows
    facts = [make_fact("log.status_summary", "all", "t", status64_count=1)]
    engine = create_engine(small_book, "durable")
    assert len(engine.run(facts).firings) == 1
    for fault, said in (("segfault", "signal 11 (SIGSEGV)"), ("hang", "did not finish evaluating 1 facts within 1 s")):
        pid = worker.running()[-1]
        monkeypatch.setenv("DIAGNOSE_TEST_ENGINE_FAULT", fault)
        monkeypatch.setenv("DIAGNOSE_ENGINE_TIMEOUT", "1")
        with pytest.raises(EngineError, match=re.escape(said)):
            engine.run(facts)
        assert pid not in worker.running()
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # already reaped
        assert gone(pid)
        monkeypatch.delenv("DIAGNOSE_TEST_ENGINE_FAULT")
        assert len(engine.run(facts).firings) == 1  # a new worker takes over


def test_keyboard_interrupt_kills_the_worker(small_book, monkeypatch):
    engine = create_engine(small_book, "durable")
    facts = [make_fact("log.status_summary", "all", "t", status64_count=1)]
    engine.run(facts)
    pid = worker.running()[-1]
    monkeypatch.setenv("DIAGNOSE_TEST_ENGINE_FAULT", "hang")
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            engine.run(facts)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert gone(pid) and pid not in worker.running()


def test_workers_are_recycled_and_evicted(tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "RECYCLE_AFTER", 3)
    book = threshold_book(tmp_path / "a", 0)
    engine = create_engine(book, "durable")
    facts = [make_fact("log.status_summary", "all", "t", status64_count=1)]
    seen = []
    for _ in range(7):
        assert len(engine.run(facts).firings) == 1
        seen.append(worker.running()[-1])
    assert len(set(seen)) == 3 and seen[0] == seen[2] != seen[3]
    assert gone(seen[0])
    first = seen[-1]
    for n in range(worker.MAX_WORKERS):  # as many other rulebooks: the least recently used worker goes
        other = threshold_book(tmp_path / f"o{n}", n + 1)
        create_engine(other, "durable").run(facts)
    assert len(worker.running()) <= worker.MAX_WORKERS
    assert first not in worker.running() and gone(first)
    assert len(engine.run(facts).firings) == 1


# ------------------------------------------------------------------- same results, any process


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundles")
    out = {}
    for name in EXAMPLES:
        path = folder / f"{name}.json"
        result = run_cli("collect", "--example", name, "-o", str(path))
        assert result.returncode == 0, result.stderr
        out[name] = load_bundle(path)
    return out


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_gives_the_same_diagnosis_in_every_mode(bundles, monkeypatch, name):
    book = load_rules()
    results = {}
    for mode in ["none", *MODES]:
        monkeypatch.setenv("DIAGNOSE_ENGINE_WORKER", mode)
        diagnosis = analyze(bundles[name], book, create_engine(book, "durable"))
        # answer facts are stamped when the analysis reads them: a second may tick between modes
        report = re.sub(r'"time": "[0-9T:Z-]+"', '"time": "-"', render(diagnosis, "json"))
        results[mode] = (diagnosis.firings, report)
    assert results["none"][0]  # something fired
    assert results["fork"] == results["none"] == results["spawn"]


@pytest.mark.parametrize("mode", MODES)
def test_rule_inline_tests_pass_in_the_worker(monkeypatch, mode):
    monkeypatch.setenv("DIAGNOSE_ENGINE_WORKER", mode)
    outcomes = list(run_rule_tests(load_rules()))
    assert len(outcomes) > 50
    assert [(o.where, o.detail) for o in outcomes if not o.passed] == []


# ----------------------------------------------------------------- a stopped worker (SIGSTOP)


def waiting_on_its_pipe(pid: int) -> bool:
    """The process sleeps in a read of a pipe (the worker has loaded the rules and waits for facts)."""
    try:
        where = Path(f"/proc/{pid}/wchan").read_text().strip()  # e.g. pipe_read, anon_pipe_read, pipe_wait
    except OSError:
        return False
    return "pipe_read" in where or "pipe_wait" in where


@pytest.mark.parametrize("when", ["loading", "waiting"])
@pytest.mark.parametrize("mode", MODES)
def test_a_stopped_worker_is_killed_at_the_deadline(tmp_path, mode, when):
    """A worker stopped with SIGSTOP, while it loads the rules or once it waits for the facts (more
    than a pipe's buffer of them, so that sending them blocks), must not hang `analyze`:
    DIAGNOSE_ENGINE_TIMEOUT bounds the whole exchange, the worker is killed, one error line, exit 3."""
    facts = [make_fact("log.status_summary", f"server:{i}", "t", status64_count=i, records=i) for i in range(20000)]
    bundle = tmp_path / "many.json"
    EvidenceBundle(facts=tuple(facts)).save(bundle)
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", DIAGNOSE_ENGINE_TIMEOUT="5", DIAGNOSE_ENGINE_WORKER=mode)
    process = subprocess.Popen(
        [sys.executable, "-m", "diagnose", "analyze", str(bundle), "--no-input", "--engine", "durable"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    workers: list[int] = []
    try:
        end = time.monotonic() + 60
        while not workers and time.monotonic() < end and process.poll() is None:
            workers = children_of(process.pid)
        assert workers, "the engine worker never started"
        while when == "waiting" and not waiting_on_its_pipe(workers[0]) and time.monotonic() < end:
            time.sleep(0.001)
        assert when == "loading" or waiting_on_its_pipe(workers[0]), "the worker never waited for facts"
        os.kill(workers[0], signal.SIGSTOP)
        _, err = process.communicate(timeout=120)  # a hang detector, far above the 5 s deadline
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert process.returncode == 3, err
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    # a worker stopped "while loading" may, on a busy machine, already have loaded (fork loads in ms):
    # then it is stopped waiting for the facts, and the message says so; either way it must end alike
    loading = r"(loading the rulebook \(\d+ rules\)|evaluating 20,000 facts)"
    doing = loading if when == "loading" else "evaluating 20,000 facts"
    assert re.fullmatch(
        r"diagnose: error: the rule engine \(durable_rules\) did not finish " + doing + r" within 5 s "
        r"and was stopped "
        r"\(DIAGNOSE_ENGINE_TIMEOUT sets the limit\)",
        lines[0],
    ), lines[0]
    assert all(gone(pid) for pid in workers)
    assert [pid for pid in in_session(process.pid) if not gone(pid)] == []


# ------------------------------------------------- durable_rules that does not import (Python 3.13+)

SHIM = (
    'raise ImportError("/opt/x/durable_rules_engine.cpython-313-x86_64-linux-gnu.so: '
    'undefined symbol: PyEval_CallObject")\n'
)
IMPORT_TEXT = (
    "ImportError: /opt/x/durable_rules_engine.cpython-313-x86_64-linux-gnu.so: undefined symbol: PyEval_CallObject"
)


@pytest.fixture
def broken_durable(tmp_path) -> dict[str, str]:
    """The environment of a Python where `import durable_rules_engine` fails, as 2.0.28 does on 3.13:
    a module of that name first on sys.path that raises ImportError."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "durable_rules_engine.py").write_text(SHIM, encoding="utf-8")
    return {"PYTHONPATH": f"{shim}{os.pathsep}{REPO}"}


@pytest.mark.parametrize("mode", [*MODES, "none"])
def test_durable_that_does_not_import_is_named_in_the_error(broken_durable, mode):
    result = run_cli(
        "run", "--example", "seed", "--engine", "durable", env={**broken_durable, "DIAGNOSE_ENGINE_WORKER": mode}
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [
        "diagnose: error: the rule engine (durable_rules) cannot run here: durable_rules does not import on Python "
        f"{sys.version.split()[0]}: {IMPORT_TEXT} (--engine reference, or auto, uses the reference evaluator)"
    ]


@pytest.mark.parametrize("mode", [*MODES, "none"])
def test_auto_falls_back_to_the_reference_and_says_why(broken_durable, tmp_path, mode):
    out = tmp_path / "d.json"
    result = run_cli(
        "run",
        "--example",
        "seed",
        "--format",
        "json",
        "-o",
        str(out),
        env={**broken_durable, "DIAGNOSE_ENGINE_WORKER": mode},
    )
    assert result.returncode == 0, result.stderr
    reason = f"auto: durable_rules does not import on Python {sys.version.split()[0]}: {IMPORT_TEXT}"
    said = [line for line in result.stderr.splitlines() if "rule engine" in line]  # (other notes may follow)
    assert said == [f"diagnose: rule engine: the reference evaluator ({reason})"], result.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert (report["engine"], report["engine_reason"], report["verdict"]) == ("reference", reason, "benign")


def test_a_worker_that_fails_while_starting_says_why(tmp_path):
    """Not an ImportError: any exception in a forked worker reaches the error line, not only "exited
    with code 70"."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "durable_rules_engine.py").write_text('raise RuntimeError("the C module is damaged")\n', encoding="utf-8")
    for mode in MODES:
        result = run_cli(
            "run",
            "--example",
            "seed",
            "--engine",
            "durable",
            env={"PYTHONPATH": f"{shim}{os.pathsep}{REPO}", "DIAGNOSE_ENGINE_WORKER": mode},
        )
        assert result.returncode == 3, result.stderr
        assert result.stderr.splitlines() == [
            "diagnose: error: the rule engine (durable_rules) worker failed to start: RuntimeError: the C module "
            "is damaged"
        ], mode


def test_rules_test_runs_the_reference_alone_where_durable_does_not_import(broken_durable):
    result = run_cli("rules", "test", env=broken_durable)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(
        r"\d+ passed, 0 failed \(each through the reference evaluator alone \(auto: durable_rules "
        r"does not import on Python [\d.]+: ImportError: .*PyEval_CallObject\)\)",
        result.stdout.splitlines()[-1],
    ), result.stdout
    refused = run_cli("rules", "test", "--engine", "durable", env=broken_durable)
    assert refused.returncode == 3 and IMPORT_TEXT in refused.stderr, refused.stderr
