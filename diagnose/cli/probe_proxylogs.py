"""`diagnose probe proxylogs PATH...`: read IIS, Exchange HttpProxy, HAProxy and nginx logs and print the
`proxy.status_summary` facts."""

from __future__ import annotations

import json
import time

import click

from diagnose.cli.probe import _text_lines, format_option, output_option, probe
from diagnose.facts import ProbeRun
from diagnose.probes import ProbeContext

MAX_NOTES_SHOWN = 20


@probe.command("proxylogs")
@click.argument("paths", nargs=-1, required=True)
@click.option("--jobs", type=click.IntRange(0, 64), default=0, show_default=True,
              help="Worker processes for big plain logs (0 = one per core, at most 2).")
@click.option("--heartbeat", "heartbeat", type=click.IntRange(1, 86400), default=None,
              help="The clients' EAS heartbeat / keep-alive, s, for the idle-timeout detector.")
@click.option("--nginx-log-format", "log_formats", multiple=True, metavar="FILE|FORMAT",
              help="nginx.conf (or a file of log_format statements), or a log_format, for nginx access logs "
                   "in a custom format (repeatable).")
@format_option
@output_option
def proxylogs(paths: tuple[str, ...], jobs: int, heartbeat: int | None, log_formats: tuple[str, ...], fmt: str,
              output: str | None) -> None:
    """Read IIS W3C (ARR, Exchange front and back end), Exchange HttpProxy, HAProxy (HTTP, TCP) and nginx
    (access, error) logs (plain, .gz, .zip, folders, globs) and count statuses, decoded Win32 codes,
    termination states, upstream errors and long-lived requests; where the failed long polls end
    (`proxy.idle_timeout`: an idle timeout below the heartbeat)."""
    from diagnose.probes.proxylogs import collect

    started = time.monotonic()
    spec = {"paths": list(paths), "jobs": jobs, "heartbeat_seconds": heartbeat, "nginx_log_format": list(log_formats)}
    result, problems = collect(ProbeContext(check="proxy-logs"), spec)
    run = ProbeRun("proxylogs", result.status, result.reason, "proxy-logs",
                   ("proxy.status_summary", "proxy.idle_timeout"),
                   time.monotonic() - started)
    for problem in problems[:MAX_NOTES_SHOWN]:
        click.echo(f"diagnose: note: {problem}", err=True)
    if len(problems) > MAX_NOTES_SHOWN:
        click.echo(f'diagnose: note: ... {len(problems) - MAX_NOTES_SHOWN} more (see "problems" in --format json)',
                   err=True)
    if fmt == "json":
        text = json.dumps({"facts": [f.to_json() for f in result.facts], "status": result.status.value,
                           "reason": result.reason, "problems": problems, "probe": run.to_json(),
                           "excerpts": dict(result.excerpts)}, indent=1, ensure_ascii=False)
    else:
        lines = list(_text_lines(result.facts, run))
        if result.excerpts:
            lines.append("excerpts:")
            lines += [f"    {where}: {raw}" for where, raw in result.excerpts.items()]
        text = "\n".join(lines)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        click.echo(text)
