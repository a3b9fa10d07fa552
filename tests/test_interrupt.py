"""Ctrl-C during collection leaves a usable partial bundle, with the interrupted checks marked."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, busy_evidence, run_cli

pexpect = pytest.importorskip("pexpect")
SEED = REPO / "examples" / "seed"


def test_ctrl_c_keeps_a_partial_bundle(tmp_path):
    hanging = busy_evidence(tmp_path / "many-facts.json")
    bundle = tmp_path / "partial.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "diagnose",
            "collect",
            "--offline",
            "--profile",
            str(SEED / "profile.yaml"),
            "--log",
            str(SEED / "ISALOG_20110504_FWS_000.w3c"),
            "--evidence",
            str(hanging),
            "-o",
            str(bundle),
            "--progress",
        ],
        cwd=str(REPO),
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    child.expect(r"tmg-logs\s+complete")
    time.sleep(0.3)
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    output = child.before or ""
    assert child.exitstatus == 130
    assert "Traceback" not in output
    assert f"partial bundle written to {bundle}" in output
    data = json.loads(bundle.read_text())
    status = {p["check"]: p["status"] for p in data["probes"]}
    assert status["recorded-evidence"] == "interrupted"
    assert status["tmg-logs"] == "complete"
    assert any(f["kind"] == "log.status_summary" for f in data["facts"])
    # the partial bundle is usable: it analyses, and says what is missing
    result = run_cli("analyze", str(bundle), "--format", "json", "--no-input")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["verdict"] in ("benign", "inconclusive")
    assert any(p["status"] == "interrupted" for p in report["probes"])


# ------------------------------------------------------------------------------------ Ctrl-C at any moment
#
# The terminal sends SIGINT to the whole foreground process group: the command and every worker it
# started (capture and log workers, the engine worker). Each run below starts in a process group of its
# own, waits for a moment of the run (a progress line, or the report blocked on its output), sends SIGINT
# to the group, and then asks: exit 130, no traceback, and no process of the group left running.

SPLIT_CAPTURE_BYTES = 34 << 20  # over SPLIT_MIN_BYTES: the capture is read by worker processes
SPLIT_LOG_BYTES = 20 << 20  # over the log reader's SPLIT_AT: the log is read by worker processes


@pytest.fixture(scope="module")
def big_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A W3C log and a pcap capture large enough to be read by worker processes."""
    from diagnose.probes.capture.analysis import SPLIT_MIN_BYTES
    from diagnose.probes.logs import SPLIT_AT
    from tests.probes.capture import synth

    assert SPLIT_CAPTURE_BYTES > SPLIT_MIN_BYTES and SPLIT_LOG_BYTES > SPLIT_AT
    folder = tmp_path_factory.mktemp("big")
    seed_log = (SEED / "ISALOG_20110504_FWS_000.w3c").read_text().splitlines(keepends=True)
    log = folder / "ISALOG_big.w3c"
    with open(log, "w") as fh:
        fh.writelines(seed_log[:4])
        block = "".join(seed_log[4:]) * 2000
        while fh.tell() < SPLIT_LOG_BYTES:
            fh.write(block)
    capture = folder / "big.pcap"
    conversations = 1000
    while not capture.exists() or capture.stat().st_size < SPLIT_CAPTURE_BYTES:
        conversations *= 2
        segments = list(synth.conversations(conversations, seed=5, concurrency=200, extra_data=3))
        synth.write_file(capture, "pcap", synth.records_for(segments))
    return log, capture


def _group_left(pgid: int) -> list[str]:
    """The processes of group `pgid` still running (zombies aside: their parent is gone)."""
    import psutil

    left = []
    for proc in psutil.process_iter(["pid", "status", "cmdline"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()  # (for the failure message)
                masks = " ".join(line.split()[1] for line in status if line.startswith(("PPid", "SigBlk", "SigIgn")))
                left.append(f"{proc.pid} [ppid sigblk sigign: {masks}] {' '.join(proc.info['cmdline'] or [])[:80]}")
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            continue
    return left


def _tracebacks(stderr: str) -> list[str]:
    """The tracebacks in `stderr`. A worker process started (fork+exec) by multiprocessing runs
    `python -c "from multiprocessing... import ..."` and is a bare interpreter until it imports
    `diagnose`: SIGINT sent to the process group in those first milliseconds printed a KeyboardInterrupt
    traceback that no code of this project runs in. The forkserver and its resource tracker are now started
    with SIGINT ignored (probes/workers.py), so that is a traceback like any other."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in stderr.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            current = [line]
            blocks.append(current)
        elif current is not None:
            current.append(line)
            if not line.startswith(" "):  # the exception's own line ends the traceback
                current = None
    return ["\n".join(block) for block in blocks]


def _interrupt_at(
    args: list[str], marker: tuple[str, ...] | None, jitter: float, cwd: Path
) -> tuple[int, str, list[str]]:
    """Start diagnose ARGS in a new process group; once a line holding every string of `marker` appears on
    stderr (None: at once), wait `jitter` s and send SIGINT to the group. (exit code, stderr, processes of
    the group left)."""
    import signal
    import threading

    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", DIAGNOSE_NETWORK="loopback")
    proc = subprocess.Popen(
        [sys.executable, "-m", "diagnose", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=str(cwd),
        env=env,
        start_new_session=True,
    )
    seen = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            lines.append(raw.decode("utf-8", "replace"))
            if marker is not None and all(part in lines[-1] for part in marker):
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert marker is None or seen.wait(120), f"never saw {marker!r}:\n{''.join(lines)}"
        time.sleep(jitter)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(30)
    left = _group_left(proc.pid)
    limit = time.monotonic() + 5
    while left and time.monotonic() < limit:  # a worker may need a moment to go after its parent stopped it
        time.sleep(0.1)
        left = _group_left(proc.pid)
    for line in left:  # leave nothing behind, even when the test fails
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGKILL)
    return code, "".join(lines), left


MOMENTS: dict[str, tuple[tuple[str, ...] | None, float]] = {
    # (what the progress line that starts the moment holds, how long after it to press Ctrl-C)
    "start-up": (None, 0.2),  # the command's modules are being imported (click said "Aborted!", exit 1)
    "collection": (("running",), 0.0),
    "log-workers": (("tmg-logs", "parts read"), 0.0),
    "capture-workers": (("capture-teardown", "reading big.pcap"), 0.1),
    "engine": (("capture-teardown", "complete ("), 0.1),
}
TRIALS = int(os.environ.get("DIAGNOSE_INTERRUPT_TRIALS", "2"))  # more: a longer stress run


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_ctrl_c_at_each_moment_of_a_run(big_inputs: tuple[Path, Path], tmp_path: Path, moment: str) -> None:
    """Issue 13 item 5: Ctrl-C left worker processes blocked for ever (14 of 80 trials) and printed
    BrokenPipeError/KeyboardInterrupt tracebacks (10 of 80)."""
    log, capture = big_inputs
    marker, delay = MOMENTS[moment]
    args = [
        "run",
        "--profile",
        str(SEED / "profile.yaml"),
        "--log",
        str(log),
        "--capture",
        str(capture),
        "--no-input",
        "--progress",
        "--why",
        "--save-evidence",
        str(tmp_path / "bundle.json"),
    ]
    for trial in range(TRIALS):
        code, stderr, left = _interrupt_at(args, marker, delay * (1 + trial), tmp_path)
        assert not left, f"trial {trial}: processes left running:\n" + "\n".join(left)
        assert not _tracebacks(stderr) and "Exception ignored" not in stderr, f"trial {trial}:\n{stderr}"
        if code == 130:
            assert "diagnose: interrupted" in stderr
        else:  # the run ended before Ctrl-C arrived (a fast machine: the last moments, or a later, longer delay)
            assert (moment == "engine" or trial > 0) and code in (0, 1), stderr


def test_ctrl_c_while_the_report_waits_on_its_output(tmp_path: Path) -> None:
    """The report is written to a FIFO nobody reads: the write blocks (the output moment) until Ctrl-C."""
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    args = ["run", "--example", "seed", "--no-input", "--progress", "-o", str(fifo)]
    for trial in range(TRIALS):
        code, stderr, left = _interrupt_at(args, ("recorded-evidence",), 2.0 + 0.3 * trial, tmp_path)
        assert (code, left) == (130, []), stderr
        assert "Traceback" not in stderr and stderr.rstrip().endswith("diagnose: interrupted"), stderr


# ------------------------------------------------------------------------ the start-up window, closed


def _run_script(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / name
    script.write_text(text)
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=str(tmp_path),
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal dispositions from /proc")
def test_the_forkserver_and_its_workers_start_deaf_to_ctrl_c(tmp_path: Path) -> None:
    """The deterministic face of the start-up window: the forkserver and its resource tracker must ignore
    SIGINT from their first instruction (inherited through exec), and so must the workers they fork;
    the parent keeps its own handler."""
    done = _run_script(
        tmp_path,
        "probe_forkserver.py",
        (
            "import multiprocessing, multiprocessing.forkserver as fs, multiprocessing.resource_tracker as rt\n"
            "import os, re, signal\n"
            "from diagnose import interrupts\n"
            "from diagnose.probes import workers\n"
            "def ignored(pid):\n"
            "    mask = int(re.search(r'SigIgn:\\s*([0-9a-f]+)', open(f'/proc/{pid}/status').read()).group(1), 16)\n"
            "    return bool(mask & 2)  # bit 1: SIGINT\n"
            "def child(queue):\n"
            "    queue.put(ignored(os.getpid()))\n"
            "if __name__ == '__main__':\n"
            "    interrupts.install()\n"
            "    workers.start_forkserver_deaf_to_ctrl_c()\n"
            "    context = workers.context_for('forkserver')\n"
            "    queue = context.Queue()\n"
            "    process = context.Process(target=child, args=(queue,))\n"
            "    process.start()\n"
            "    print(ignored(fs._forkserver._forkserver_pid), ignored(rt._resource_tracker._pid), queue.get(timeout=30),\n"
            "          ignored(os.getpid()), signal.getsignal(signal.SIGINT) is interrupts._on_interrupt)\n"
            "    process.join()\n"
        ),
    )
    assert done.stdout.split() == ["True", "True", "True", "False", "True"], done.stdout + done.stderr


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_a_ctrl_c_while_the_forkserver_starts_deaf_is_not_lost(tmp_path: Path) -> None:
    """SIGINT is ignored for the moment the forkserver and its resource tracker start; a Ctrl-C pressed
    as each of them is started must still stop the run (the resource tracker's own unblock dropped it)."""
    done = _run_script(
        tmp_path,
        "pending.py",
        (
            "import os, signal\n"
            "import multiprocessing.util as util\n"
            "from diagnose import interrupts\n"
            "from diagnose.probes import workers\n"
            "start = util.spawnv_passfds\n"
            "def pressed(*args):\n"
            "    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the helper process is started\n"
            "    return start(*args)\n"
            "if __name__ == '__main__':\n"
            "    util.spawnv_passfds = pressed\n"
            "    interrupts.install()\n"
            "    try:\n"
            "        workers.start_forkserver_deaf_to_ctrl_c()\n"
            "        print('lost')\n"
            "    except KeyboardInterrupt:\n"
            "        print('interrupted', interrupts.pending())\n"
        ),
    )
    assert done.stdout.splitlines() == ["interrupted True"], done.stdout + done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a child subreaper is a Linux feature")
def test_a_worker_orphaned_while_the_run_leaves_is_stopped_too(tmp_path: Path) -> None:
    """The orphan of a CI trial: the forkserver forked a worker just as `leave` stopped it, the worker went
    to init (out of reach of stop_children) and ran on, deaf to Ctrl-C. Here a child starts a grandchild
    when it is told to stop, and leaves; `leave` must stop the grandchild as well."""
    import psutil

    grandchild_file = tmp_path / "grandchild.pid"
    done = _run_script(
        tmp_path,
        "orphan.py",
        (
            "import subprocess, sys\n"
            "from diagnose import interrupts\n"
            "child = '''\n"
            "import os, signal, subprocess, sys, time\n"
            "def on_term(_signum, _frame):\n"
            "    grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],\n"
            "                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            f"    open({str(grandchild_file)!r}, 'w').write(str(grandchild.pid))\n"
            "    os._exit(0)\n"
            "signal.signal(signal.SIGTERM, on_term)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n"
            "'''\n"
            "proc = subprocess.Popen([sys.executable, '-c', child], stdout=subprocess.PIPE, text=True)\n"
            "assert proc.stdout.readline() == 'ready\\n'\n"
            "interrupts.leave(130, 'diagnose: interrupted')\n"
        ),
    )
    assert done.returncode == 130, done.stderr
    pid = int(grandchild_file.read_text())
    try:
        gone = psutil.wait_procs([psutil.Process(pid)], timeout=5)[1] == []
    except psutil.NoSuchProcess:
        gone = True
    if not gone:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert gone, "the grandchild started while leaving was left running"


def test_the_forkserver_is_started_early_only_for_inputs_that_may_need_workers(tmp_path: Path) -> None:
    from diagnose.probes import workers

    small = tmp_path / "small.w3c"
    small.write_bytes(b"x" * 1000)
    big = tmp_path / "big.pcap"
    with open(big, "wb") as fh:
        fh.truncate(workers.WORKERS_FROM_BYTES)
    packed = tmp_path / "trace.pcap.gz"
    packed.write_bytes(b"x" * (workers.WORKERS_FROM_BYTES // 4))
    assert not workers.may_use_workers([str(small)])  # the seed's case: no forkserver to pay for
    assert workers.may_use_workers([str(small), str(big)])
    assert workers.may_use_workers([str(packed)])
    assert workers.may_use_workers([str(tmp_path)])  # a folder
    assert workers.may_use_workers([str(tmp_path / "ISALOG_*.w3c")])  # a glob
    # the TMG log reader reads two files (or the members of a zip) in a pool of workers, however small
    other = tmp_path / "other.w3c"
    other.write_bytes(b"x" * 1000)
    assert not workers.may_use_workers([str(small)], pooled=[str(small)])
    assert workers.may_use_workers([str(small), str(other)], pooled=[str(small), str(other)])
    zipped = tmp_path / "logs.zip"
    zipped.write_bytes(b"x" * 1000)
    assert workers.may_use_workers([str(zipped)], pooled=[str(zipped)])


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="named POSIX semaphores in /dev/shm")
def test_leaving_removes_the_named_semaphores_of_the_workers_queues(tmp_path: Path) -> None:
    """Each Ctrl-C of a run with log workers left four sem.mp-* files in /dev/shm: the queues' semaphores
    are unlinked by finalisers `leave` does not run, or by the resource tracker, which it kills."""
    done = _run_script(
        tmp_path,
        "semaphores.py",
        (
            "import multiprocessing\n"
            "from diagnose import interrupts\n"
            "from diagnose.probes import workers\n"
            "if __name__ == '__main__':\n"
            "    context = workers.context_for('forkserver')\n"
            "    queue, lock = context.Queue(), context.Lock()\n"
            "    worker = context.Process(target=queue.get)\n"
            "    worker.start()\n"
            "    print(lock._semlock.name, queue._rlock._semlock.name, queue._sem._semlock.name, flush=True)\n"
            "    interrupts.leave(130, 'diagnose: interrupted')\n"
        ),
    )
    assert done.returncode == 130, done.stderr
    names = done.stdout.split()
    left = [name for name in names if Path("/dev/shm", "sem." + name.lstrip("/")).exists()]
    for name in left:  # leave nothing behind, even when the test fails
        with contextlib.suppress(OSError):
            Path("/dev/shm", "sem." + name.lstrip("/")).unlink()
    assert len(names) == 3 and not left, done.stdout + done.stderr
