"""Run one command for the fuzz suite and report how it ended, as one JSON line on stdout.

Usage: python tests/fuzz_launcher.py TIMEOUT STDOUT STDERR CWD -- COMMAND...

Why a launcher: Linux reports in `ru_maxrss` the largest resident size a process had, and a child
forked from a large process (pytest after a long run, some hundreds of MB) starts with its parent's
pages counted. This small process forks the command instead, so the figure is the command's own
(with its waited-for workers), not the test runner's.
"""

import json
import os
import signal
import subprocess
import sys
import time


def main() -> None:
    timeout, out, err, cwd = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    command = sys.argv[sys.argv.index("--") + 1 :]
    start = time.monotonic()
    with open(out, "wb") as so, open(err, "wb") as se:
        proc = subprocess.Popen(
            command, stdout=so, stderr=se, stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True
        )
        hung = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                hung = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
    proc.returncode = 0  # reaped above; keep Popen from waiting again
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever the command left behind (an orphan is a failure too)
        orphans = True
    except ProcessLookupError:
        orphans = False
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    print(
        json.dumps(
            {
                "code": code,
                "hung": hung,
                "orphans": orphans,
                "peak_kb": usage.ru_maxrss,
                "seconds": time.monotonic() - start,
            }
        )
    )


if __name__ == "__main__":
    main()
