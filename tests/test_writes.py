"""Writes (issue 13 item 6): every file goes through a temporary file and a rename, a write that fails is
one line and exit 2, a reader that leaves early is no error, and kill -9 never leaves half a file.

Disk full and read-only folders are real: a tiny tmpfs, remounted read-only, in a private mount
namespace (`unshare -m`; as root, chmod would not stop the writes). Where `unshare -m` is not allowed,
those tests are skipped and say why.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diagnose.errors import OutputError
from diagnose.writing import write_file
from tests.conftest import REPO

RUN = ["run", "--example", "seed", "--no-input"]
PREVIOUS = "the previous good report\n"


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")


def diagnose(*args: str, stdout: int | None = subprocess.PIPE, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diagnose", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=timeout,
    )


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one error line of a failed command (notes such as the seed example's time-zone remark aside)."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("diagnose: error: ")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.rstrip().endswith(errors[0])
    return errors[0]


def quiet(stderr: str) -> bool:
    """No traceback, no error line: at most notes."""
    return not any(word in stderr for word in ("Traceback", "Exception ignored", "diagnose: error"))


def _mount_namespace_missing() -> str | None:
    try:
        proc = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unshare -m cannot run here: {exc}"
    return None if proc.returncode == 0 else f"no private mount namespace here: {proc.stderr.strip()}"


NAMESPACE_MISSING = _mount_namespace_missing()
needs_mount_namespace = pytest.mark.skipif(NAMESPACE_MISSING is not None, reason=NAMESPACE_MISSING or "")


def in_tiny_tmpfs(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    """Run `script` (sh) in a private mount namespace where $DIR is a fresh 16 KiB tmpfs; the script's own
    stdout and stderr come back."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    command = f"mount -t tmpfs -o size=16k tmpfs {shlex.quote(str(folder))} && DIR={shlex.quote(str(folder))}; {script}"
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120
    )


def _cli(*args: str) -> str:
    """A shell command line running diagnose with `args`; `@DIR@` in an argument stands for the tmpfs."""
    return " ".join(shlex.quote(a) for a in [sys.executable, "-m", "diagnose", *args]).replace("@DIR@", "$DIR")


# ------------------------------------------------------------------------------------ failing writes


@needs_mount_namespace
def test_disk_full_is_one_line_and_keeps_the_previous_report(tmp_path: Path) -> None:
    script = (
        f"printf %s {shlex.quote(PREVIOUS)} > $DIR/report.html && "
        f"{_cli(*RUN, '--why', '--format', 'html', '-o', '@DIR@/report.html')}"
        "; echo exit=$?; cat $DIR/report.html; ls -A $DIR"
    )
    proc = in_tiny_tmpfs(tmp_path, script)
    out = proc.stdout.splitlines()
    assert one_error_line(subprocess.CompletedProcess([], 2, "", proc.stderr)) == (
        f"diagnose: error: {tmp_path}/tiny/report.html: cannot write: no space left on the device"
    )
    assert out[0] == "exit=2"
    assert out[1] == PREVIOUS.strip()  # the previous report, whole
    assert out[2:] == ["report.html"]  # and no temporary file left behind


@needs_mount_namespace
def test_read_only_folder_is_one_line(tmp_path: Path) -> None:
    script = (
        f"mount -o remount,ro $DIR && {_cli('collect', '--example', 'seed', '-o', '@DIR@/bundle.json')}; echo exit=$?"
    )
    proc = in_tiny_tmpfs(tmp_path, script)
    assert proc.stdout.strip() == "exit=2"
    assert one_error_line(subprocess.CompletedProcess([], 2, "", proc.stderr)) == (
        f"diagnose: error: {tmp_path}/tiny/bundle.json: cannot write: the folder is on a read-only file system"
    )


def test_missing_folder_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "report.md"
    line = one_error_line(diagnose(*RUN, "--format", "markdown", "-o", str(target)))
    assert line == f"diagnose: error: {target}: cannot write: the folder does not exist"
    line = one_error_line(diagnose("probe", "tcp", "127.0.0.1:1", "-o", str(target)))
    assert line == f"diagnose: error: {target}: cannot write: the folder does not exist"


def test_full_device_as_output_file_is_one_line() -> None:
    line = one_error_line(diagnose(*RUN, "-o", "/dev/full"))
    assert line == "diagnose: error: /dev/full: cannot write: no space left on the device"


def test_full_standard_output_is_one_line() -> None:
    with open("/dev/full", "w") as full:
        proc = diagnose(*RUN, stdout=full.fileno())
    assert one_error_line(proc) == "diagnose: error: cannot write to standard output: no space left on the device"


def test_closed_standard_output_is_one_line() -> None:
    proc = subprocess.run(
        ["sh", "-c", f"exec {_cli(*RUN, '--fail-on', '0.5')} >&-"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=120,
    )
    assert one_error_line(proc) == "diagnose: error: cannot write the output: standard output is closed"


@pytest.mark.parametrize("args", [(*RUN, "--why"), ("probe", "tcp", "127.0.0.1:1", "--format", "json")])
def test_a_reader_that_leaves_early_is_not_an_error(args: tuple[str, ...]) -> None:
    """`diagnose ... | head -1`: the pipe's reader is gone before the report is written (its end is closed
    before the command starts), so every write meets a broken pipe: no traceback, the usual exit code."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "diagnose", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=_env(),
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert quiet(proc.stderr), proc.stderr


def test_head_minus_one() -> None:
    proc = subprocess.run(
        ["sh", "-c", f"{_cli(*RUN, '--why', '--format', 'html')} | head -c 10"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=120,
    )
    assert proc.stdout.lower() == "<!doctype "
    assert quiet(proc.stderr), proc.stderr


def test_write_file_keeps_a_symlink_and_writes_devices_in_place(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_file(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"
    write_file("/dev/null", "nothing\n")  # a device is written, never renamed over
    assert Path("/dev/null").is_char_device()
    with pytest.raises(OutputError, match="it is a folder"):
        write_file(tmp_path, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]


def test_write_file_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    target = tmp_path / "bundle.json"
    target.write_text("{}\n")
    target.chmod(0o640)
    write_file(target, '{"facts": []}\n')
    assert (target.stat().st_mode & 0o777, target.read_text()) == (0o640, '{"facts": []}\n')


# ------------------------------------------------------------------------------------ kill -9

_WRITER = """
import sys
from diagnose.cli.common import write_output
from diagnose.facts import EvidenceBundle
kind, path = sys.argv[1], sys.argv[2]
if kind == "bundle":
    EvidenceBundle(facts=(), excerpts={"capture.pcap:%d" % n: "x" * 1000 for n in range(150_000)}).save(path)
else:
    write_output("report line\\n" * 12_000_000, path)
"""


def _changed(target: Path, before: os.stat_result) -> bool:
    """The target was touched (truncated, grown or replaced), or a temporary file is being written beside it."""
    if any(p.name.startswith(f".{target.name}.") for p in target.parent.iterdir()):
        return True
    now = target.stat()
    return (now.st_ino, now.st_size, now.st_mtime_ns) != (before.st_ino, before.st_size, before.st_mtime_ns)


@pytest.mark.parametrize("kind", ["bundle", "report"])
def test_kill_9_in_mid_write_leaves_the_previous_file(tmp_path: Path, kind: str) -> None:
    """The writer is killed (SIGKILL) as soon as its write has begun: the previous file must be whole."""
    target = tmp_path / ("bundle.json" if kind == "bundle" else "report.txt")
    previous = json.dumps({"facts": [], "note": "the previous good bundle"}) + "\n"
    killed = 0
    for attempt in range(3):
        target.write_text(previous)
        before = target.stat()
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, kind, str(target)], cwd=REPO, env=_env(), stderr=subprocess.PIPE
        )
        limit = time.monotonic() + 60
        while writer.poll() is None and not _changed(target, before) and time.monotonic() < limit:
            time.sleep(0.001)
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=60)
        if writer.returncode == -signal.SIGKILL:
            assert target.read_text() == previous, f"attempt {attempt}: the previous file was damaged"
            killed += 1
        else:  # the write finished first: the new file is whole
            assert writer.returncode == 0, writer.stderr
            assert target.stat().st_size > len(previous)
    assert killed, "the writer always finished before it could be killed: nothing was tested"


def test_a_full_standard_error_does_not_stop_the_run() -> None:
    """Progress lines and the error line go to stderr; when it cannot be written (`2>/dev/full`) the
    run still reports on stdout, and an error still sets the exit code."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "diagnose", *RUN, "--progress"],
            stdout=subprocess.PIPE,
            stderr=full,
            text=True,
            cwd=REPO,
            env=_env(),
            timeout=120,
        )
        assert proc.returncode == 0
        assert proc.stdout.startswith("Verdict: BENIGN")
        proc = subprocess.run(
            [sys.executable, "-m", "diagnose", *RUN, "-o", "/nonexistent/report.txt"],
            stdout=subprocess.PIPE,
            stderr=full,
            text=True,
            cwd=REPO,
            env=_env(),
            timeout=120,
        )
        assert (proc.returncode, proc.stdout) == (2, "")
