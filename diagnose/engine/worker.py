"""The engine worker: durable_rules runs in a process of its own.

durable_rules 2.0.28 can crash in its C code (SIGSEGV with correlated rules, #381; `free(): invalid
pointer` aborts in `delete_state`). In the tool's own process such a crash kills it without a word,
or with a core dump. So the compiled rulebook (`diagnose.engine.program.Program`, plain data) is
loaded into durable_rules in a worker process, which then evaluates one diagnosis per request: the
parent sends the facts, the worker returns the firings. A crash, an abort, an unexpected exit or a
hang past the deadline becomes an EngineError that says what happened, e.g. "the rule engine
(durable_rules) crashed with signal 11 (SIGSEGV) while evaluating 1,234 facts".

How the worker starts (DIAGNOSE_ENGINE_WORKER):
* `fork` (the default on Linux and other POSIX systems except macOS): a copy of this process, a
  few milliseconds; it closes every file it inherited except its two pipes.
* `spawn` (the default on Windows and macOS, where forking a process that may have threads is not
  safe): `python -m diagnose.engine.worker`, which gets the program as its first request.
* `none`: durable_rules runs in this process, without isolation (for debugging).

A worker is kept per compiled rulebook (at most MAX_WORKERS, least recently used closed first) and
serves any number of diagnoses, so guided questions and rule tests do not pay for a start each;
it is replaced after RECYCLE_AFTER diagnoses (durable's memory grows slowly) or after it failed.
It ignores Ctrl-C: the parent stops it (SIGKILL) and re-raises KeyboardInterrupt; when the parent
exits it closes the pipe and the worker leaves; a worker whose parent died leaves at end of input.

Protocol: frames of an 8-byte little-endian length and a pickle, over two pipes (both ends are
this module). Requests: ("start", Program, fault) once (spawn only), then ("run", fault, timeout,
messages); answers: ("ready", pid) | ("ok", firings) | ("error", message) | ("unavailable",
(message, cause)) when durable_rules does not import (`auto` then runs the reference evaluator). A
worker that fails in any other way says why on its stderr (a forked one too), and the parent reads
that file before it closes it, so the error line names the cause.

DIAGNOSE_ENGINE_TIMEOUT (seconds) replaces the deadline of loading the rulebook (default 60 s) and
of one evaluation (default 60 s plus 5 ms per fact). It is a wall-clock bound on the whole
exchange: sending the facts waits for the pipe with the same deadline, so a worker that stopped
reading (hung, or stopped with SIGSTOP) is killed when it passes, never waited on forever.
DIAGNOSE_TEST_ENGINE_FAULT is a test hook: `abort`, `segfault`, `exit` or `hang`, with
`@start` to fail while loading the rulebook instead of while evaluating; the worker then really
aborts, dereferences NULL, exits 70 or hangs.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import gc
import io
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, cast

from diagnose.engine.durable_session import Evaluator, Message, PartitionSpec, RawFiring
from diagnose.errors import EngineError, EngineUnavailable, UsageError

try:  # POSIX; imported here, not in a forked worker (another thread may be importing at fork time)
    import fcntl
    import resource
except ImportError:
    fcntl = resource = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from diagnose.engine.program import Program

MODES = ("fork", "spawn", "none")
FAULTS = ("abort", "segfault", "exit", "hang")
MAX_WORKERS = 4
RECYCLE_AFTER = 1000
WAIT_WITH_SELECT = os.name != "nt"  # else a watchdog timer (select() on Windows takes only sockets)
START_TIMEOUT = 60.0  # loading the rulebook into durable takes milliseconds
WHO = "the rule engine (durable_rules)"
_HEADER = struct.Struct("<Q")
_WINDOWS_CRASHES = {
    0xC0000005: "access violation",
    0xC00000FD: "stack overflow",
    0xC0000409: "fast fail / abort",
    0xC0000374: "heap corruption",
    0xC000001D: "illegal instruction",
}


# -------------------------------------------------------------------------------------- settings


def mode() -> str:
    chosen = os.environ.get("DIAGNOSE_ENGINE_WORKER", "").strip().lower()
    if chosen:
        if chosen not in MODES:
            raise UsageError(f"DIAGNOSE_ENGINE_WORKER must be one of {', '.join(MODES)}, not {chosen!r}")
        if chosen == "fork" and not hasattr(os, "fork"):
            raise UsageError("DIAGNOSE_ENGINE_WORKER=fork: this platform cannot fork; use spawn")
        return chosen
    return "fork" if hasattr(os, "fork") and sys.platform != "darwin" else "spawn"


def deadline_for(facts: int | None) -> float:
    """Seconds allowed for one evaluation of `facts` facts (None: for loading the rulebook)."""
    given = os.environ.get("DIAGNOSE_ENGINE_TIMEOUT", "").strip()
    if not given:
        return START_TIMEOUT if facts is None else 60.0 + 0.005 * facts
    try:
        value = float(given)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise UsageError(f"DIAGNOSE_ENGINE_TIMEOUT must be a number of seconds above 0, not {given!r}")
    return value


def fault_hook() -> str:
    fault = os.environ.get("DIAGNOSE_TEST_ENGINE_FAULT", "").strip().lower()
    if fault and (fault.partition("@")[0] not in FAULTS or fault.partition("@")[2] not in ("", "start")):
        raise UsageError(
            f"DIAGNOSE_TEST_ENGINE_FAULT must be one of {', '.join(FAULTS)} (optionally @start), not {fault!r}"
        )
    return fault


# -------------------------------------------------------------------------------------- the parent


def prepare(program: Program) -> None:
    """Start the worker for `program` now, so it loads the rules while the caller goes on."""
    chosen = mode()
    if chosen != "none":
        _worker(program, chosen)


def evaluate(program: Program, messages: Sequence[Message]) -> list[RawFiring]:
    """The firings of `program` on `messages`, computed by durable_rules in the worker."""
    chosen = mode()
    if chosen == "none":
        return _evaluator(program).evaluate(messages)
    fault, timeout = fault_hook(), deadline_for(len(messages))
    while True:  # a worker closed by another thread (recycled, evicted) is replaced
        found = _worker(program, chosen).evaluate(messages, fault, timeout)
        if found is not None:
            return found


_REGISTRY: OrderedDict[tuple[str, str], Worker] = OrderedDict()
_REGISTRY_LOCK = threading.Lock()
_IN_PROCESS: dict[str, Evaluator] = {}


def _evaluator(program: Program) -> Evaluator:
    with _REGISTRY_LOCK:
        found = _IN_PROCESS.get(program.key)
        if found is None:  # never freed: durable_rules does not release a ruleset's memory
            found = _IN_PROCESS[program.key] = Evaluator(program.partitions)
        return found


def _worker(program: Program, chosen: str) -> Worker:
    key = (program.key, chosen)
    retired: list[Worker] = []
    with _REGISTRY_LOCK:
        worker = _REGISTRY.get(key)
        if worker is not None and (worker.closed or worker.runs >= RECYCLE_AFTER):
            retired.append(_REGISTRY.pop(key))
            worker = None
        if worker is None:
            worker = _REGISTRY[key] = Worker(program, chosen)
            while len(_REGISTRY) > MAX_WORKERS:
                retired.append(_REGISTRY.popitem(last=False)[1])
        else:
            _REGISTRY.move_to_end(key)
    for old in retired:
        old.close()
    return worker


def running() -> list[int]:
    """The process ids of the workers kept now, least recently used first."""
    with _REGISTRY_LOCK:
        return [w.pid for w in _REGISTRY.values() if not w.closed]


@atexit.register
def close_all() -> None:
    """Close every worker (they leave at end of input) and wait for them."""
    with _REGISTRY_LOCK:
        workers = list(_REGISTRY.values())
        _REGISTRY.clear()
    for worker in workers:
        worker.close()


class Worker:
    """One worker process with `program` loaded; requests are serialised by a lock."""

    def __init__(self, program: Program, chosen: str) -> None:
        self.program = program
        self.lock = threading.Lock()
        self.runs = 0
        self.ready = False
        self.closed = False
        self.expired = False
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read after the worker died, closed in _stop
        self.proc: subprocess.Popen[bytes] | None = None
        fault = fault_hook()
        try:
            if chosen == "fork":
                self._fork(fault)
            else:
                self._spawn(fault)
        except OSError as exc:
            self.stderr.close()
            raise EngineError(
                f"could not start {WHO} worker: {exc.strerror or exc} "
                f"(DIAGNOSE_ENGINE_WORKER=none runs it in this process)"
            ) from None

    @property
    def pid(self) -> int:
        return self._pid

    def _fork(self, fault: str) -> None:
        to_child, from_parent = os.pipe()[::-1]
        from_child, to_parent = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12 warns when forking with threads alive; the child only runs the engine,
            # touches no lock a thread of the parent may hold, and is bounded by the deadline.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the worker; it never returns into the caller's code
            status = 70
            try:
                _forked_child(from_parent, to_parent, self.stderr.fileno(), self.program.partitions, fault)
                status = 0
            except BaseException as exc:  # said on stderr, where the parent's error line reads it
                _last_gasp(exc)
            finally:
                os._exit(status)
        os.close(from_parent)
        os.close(to_parent)
        self._pid = pid
        self.writer: IO[bytes] = io.FileIO(to_child, "wb")
        self.reader: IO[bytes] = io.FileIO(from_child, "rb")

    def _spawn(self, fault: str) -> None:
        import diagnose

        root = os.path.dirname(os.path.dirname(os.path.abspath(diagnose.__file__)))
        env = dict(os.environ, LIBC_FATAL_STDERR_="1")
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "diagnose.engine.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            close_fds=True,
            bufsize=0,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._pid = self.proc.pid
        self.writer, self.reader = self.proc.stdin, self.proc.stdout
        with contextlib.suppress(OSError):  # if the worker is gone, reading its answer tells how
            _write_frame(self.writer, ("start", self.program.partitions, fault))

    # ---------------------------------------------------------------------------------- requests

    def evaluate(self, messages: Sequence[Message], fault: str, timeout: float) -> list[RawFiring] | None:
        """The firings, or None when this worker was closed before it could take the request."""
        with self.lock:
            if self.closed:
                return None
            if not self.ready:
                status, payload = self._call(
                    None, deadline_for(None), f"loading the rulebook ({self.program.rules:,} rules)"
                )
                if status in ("error", "unavailable"):
                    self._stop(kill=False)
                    if status == "unavailable":
                        raise EngineUnavailable(*payload)
                    raise EngineError(str(payload))
                self.ready = True
            self.runs += 1
            status, payload = self._call(
                ("run", fault, timeout, messages), timeout, f"evaluating {len(messages):,} facts"
            )
        if status == "error":
            raise EngineError(str(payload))
        assert isinstance(payload, list)
        return payload

    def _call(self, request: object, timeout: float, doing: str) -> tuple[str, Any]:
        """Send `request` (None: only read) and read the answer, within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        watchdog = None
        if not WAIT_WITH_SELECT:  # Windows: select() does not take pipes; a timer stops the worker
            watchdog = threading.Timer(timeout, self._expire)
            watchdog.daemon = True
            watchdog.start()
        try:
            try:
                if request is not None:
                    _write_frame(self.writer, request, deadline if watchdog is None else None)
                answer = _read_frame(self.reader, deadline if watchdog is None else None)
            except OSError:  # a broken pipe: the worker is gone
                answer = None
            except _Expired:
                self.expired = True
                answer = None
        except BaseException:  # Ctrl-C (or anything else): the worker must not outlive this
            self._stop(kill=True)
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
        if answer is None:
            raise self._failure(doing, timeout)
        if self.expired:  # the answer came as the deadline passed: use it, but this worker is done
            self._stop(kill=True)
        assert isinstance(answer, tuple)
        return answer

    def _expire(self) -> None:
        self.expired = True
        self._kill()

    def _failure(self, doing: str, timeout: float) -> EngineError:
        code = self._stop(kill=self.expired, keep_stderr=True)  # the worker has ended: its stderr is complete
        said = self._last_words()
        self.stderr.close()
        if self.expired:
            return EngineError(
                f"{WHO} did not finish {doing} within {timeout:g} s and was stopped "
                f"(DIAGNOSE_ENGINE_TIMEOUT sets the limit)"
            )
        if code is not None and code < 0:
            try:
                name = f" ({signal.Signals(-code).name})"
            except ValueError:
                name = ""
            text = f"{WHO} crashed with signal {-code}{name} while {doing}"
        elif code is not None and code >= 0xC0000000:
            what = _WINDOWS_CRASHES.get(code, "unhandled")
            text = f"{WHO} crashed with exception 0x{code:08X} ({what}) while {doing}"
        elif code:
            text = f"{WHO} exited with code {code} while {doing}"
        else:
            text = f"{WHO} closed its pipe without answering while {doing}"
        return EngineError(f"{text}: {said}" if said else text)

    def _last_words(self) -> str:
        """The last line the worker wrote on stderr (e.g. glibc's "free(): invalid pointer")."""
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 4096))
            tail = self.stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        return lines[-1][:200] if lines else ""

    # ---------------------------------------------------------------------------------- lifetime

    def _kill(self) -> None:
        try:
            if self.proc is not None:
                self.proc.kill()
            else:
                os.kill(self._pid, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass  # already gone (and perhaps reaped)

    def _reap(self, grace: float) -> int | None:
        """Wait up to `grace` seconds for the worker to end, then kill it; its exit code (negative:
        the signal that ended it), or None if someone else reaped it."""
        if self.proc is not None:
            try:
                return self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        end, pause = time.monotonic() + grace, 0.0002
        while True:
            late = time.monotonic() >= end
            if late:
                self._kill()
            try:
                pid, status = os.waitpid(self._pid, 0 if late else os.WNOHANG)
            except ChildProcessError:
                return None
            if pid:  # (os.waitstatus_to_exitcode is Python 3.9+)
                return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def _stop(self, kill: bool, grace: float = 2.0, keep_stderr: bool = False) -> int | None:
        """End the worker (closing its input makes it leave; `kill` does not wait for that), reap it
        and release the pipes (and its stderr file, unless `keep_stderr`: the caller reads it, then
        closes it). Returns its exit code."""
        self.closed = True
        if kill:
            self._kill()
        for stream in (self.writer, self.reader):
            with contextlib.suppress(OSError):
                stream.close()
        code = self._reap(grace)
        if not keep_stderr:
            self.stderr.close()
        return code

    def close(self) -> None:
        """Ask the worker to leave and wait for it (killed if it does not leave within a second)."""
        taken = self.lock.acquire(timeout=5.0)
        try:
            if not self.closed:
                self._stop(kill=not taken, grace=1.0)
        finally:
            if taken:
                self.lock.release()


def _write_frame(stream: IO[bytes], message: object, deadline: float | None = None) -> None:
    """Send one message. With a deadline (time.monotonic()), raises _Expired when it passes before
    the reader (a stopped or hung worker) has taken it all; `stream` must then be unbuffered."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if deadline is not None:
        os.set_blocking(stream.fileno(), False)
    for chunk in (_HEADER.pack(len(data)), data):
        view = memoryview(chunk)
        while view:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [stream], [], left)[1]:
                    raise _Expired
            try:
                written = stream.write(view)
            except BlockingIOError:
                written = 0
            view = view[written or 0 :]
    stream.flush()


class _Expired(Exception):
    """The deadline passed before the answer was complete."""


def _read_frame(stream: IO[bytes], deadline: float | None = None) -> object | None:
    """One message, or None at end of input (also when it ends inside a frame). With a deadline
    (time.monotonic()), raises _Expired when it passes first; `stream` must then be unbuffered."""
    header = _read_exact(stream, _HEADER.size, deadline)
    if header is None:
        return None
    body = _read_exact(stream, _HEADER.unpack(header)[0], deadline)
    return None if body is None else pickle.loads(body)


def _read_exact(stream: IO[bytes], size: int, deadline: float | None) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stream], [], [], left)[0]:
                raise _Expired
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            return None
        got += n
    return buffer


# -------------------------------------------------------------------------------------- the worker


def _forked_child(from_parent: int, to_parent: int, stderr: int, program: Sequence[PartitionSpec], fault: str) -> None:
    assert fcntl is not None
    gc.freeze()  # the inherited objects stay as they are: never collected (or copied) here
    keep = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3) for fd in (from_parent, to_parent, stderr)]
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(keep[2], 2)
    _close_inherited({0, 1, 2, keep[0], keep[1]})
    os.environ["LIBC_FATAL_STDERR_"] = "1"  # glibc's fatal messages to stderr, not the terminal
    _harden()
    serve(io.FileIO(keep[0], "rb"), io.FileIO(keep[1], "wb"), program, fault)


def _last_gasp(exc: BaseException) -> None:
    """In a forked worker about to exit: the exception, last line last, on stderr (fd 2 is the
    worker's stderr file once _forked_child has set it up; before that, the parent's stderr)."""
    with contextlib.suppress(Exception):
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        os.write(2, "".join(lines).encode("utf-8", "replace"))


def _close_inherited(keep: set[int]) -> None:
    """Close every file descriptor but `keep`: the parent's pipes, sockets and other workers' pipes
    must not be held open by this process."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            found = [int(name) for name in os.listdir(folder)]
        except (OSError, ValueError):
            continue
        for fd in found:
            if fd not in keep:
                with contextlib.suppress(OSError):  # the directory listing's own descriptor
                    os.close(fd)
        return
    limit = min(os.sysconf("SC_OPEN_MAX"), 65536)
    start = 0
    for fd in sorted(keep):
        os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, limit)


def _harden() -> None:
    """Ctrl-C is the parent's to handle; no core dump; no Python traceback on a fatal signal."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    faulthandler.disable()
    if resource is not None:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))


def _inject(fault: str, phase: str) -> None:
    """The test hook: fail for real, the way a crashing engine would."""
    what, _, when = fault.partition("@")
    if not what or (when or "run") != phase:
        return
    if what == "abort":
        os.abort()
    if what == "segfault":
        import ctypes

        ctypes.string_at(0)
    if what == "exit":
        os._exit(70)
    if what == "hang":
        while True:
            time.sleep(3600)


def serve(reader: IO[bytes], writer: IO[bytes], program: Sequence[PartitionSpec], fault: str) -> None:
    """The worker's loop: load the compiled rulebook, then answer requests until end of input."""
    try:
        _inject(fault, "start")
        evaluator = Evaluator(program)
        _write_frame(writer, ("ready", os.getpid()))
        while True:
            request = _read_frame(reader)
            if request is None:
                return
            _, fault, timeout, messages = cast("tuple[str, str, float, Sequence[Message]]", request)
            if hasattr(signal, "alarm"):  # a hang in C code still ends, even if the parent is gone
                signal.alarm(int(timeout) + 30)
            _inject(fault, "run")
            try:
                answer: tuple[str, Any] = ("ok", evaluator.evaluate(messages))
            except EngineError as exc:
                answer = ("error", exc.message)
            except Exception as exc:  # a defect here: say what, rather than die without a word
                answer = ("error", f"{WHO} worker failed: {type(exc).__name__}: {exc}")
            if hasattr(signal, "alarm"):
                signal.alarm(0)
            _write_frame(writer, answer)
    except EngineUnavailable as exc:  # durable_rules does not import here
        _answer_or_leave(writer, ("unavailable", (exc.message, exc.cause)))
    except EngineError as exc:  # the rulebook did not load
        _answer_or_leave(writer, ("error", exc.message))
    except OSError:
        return  # the parent is gone
    except Exception as exc:  # a defect while starting: say what, rather than die without a word
        _answer_or_leave(writer, ("error", f"{WHO} worker failed to start: {type(exc).__name__}: {exc}"))


def _answer_or_leave(writer: IO[bytes], answer: tuple[str, Any]) -> None:
    with contextlib.suppress(OSError):
        _write_frame(writer, answer)


def main() -> None:
    """`python -m diagnose.engine.worker` (the spawn mode): requests on stdin, answers on stdout."""
    reader = os.fdopen(os.dup(0), "rb")
    writer = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # nothing the engine might print can corrupt the answers
    _harden()
    start = _read_frame(reader)
    if not (isinstance(start, tuple) and start and start[0] == "start"):
        sys.exit(2)
    _, program, fault = start
    serve(reader, writer, program, fault)


if __name__ == "__main__":
    main()
