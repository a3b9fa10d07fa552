"""`diagnose probe proxylogs PATH...`: read IIS, Exchange HttpProxy, HAProxy and nginx logs and print the
`proxy.status_summary` facts."""

from __future__ import annotations

import click

from diagnose.cli.probe import emit_bundle, format_option, output_option, probe, run_check


@probe.command("proxylogs")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--jobs",
    type=click.IntRange(0, 64),
    default=0,
    show_default=True,
    help="Worker processes for big plain logs (0 = one per core, at most 2).",
)
@click.option(
    "--heartbeat",
    "heartbeat",
    type=click.IntRange(1, 86400),
    default=None,
    help="The clients' EAS heartbeat / keep-alive, s, for the idle-timeout detector.",
)
@click.option(
    "--nginx-log-format",
    "log_formats",
    multiple=True,
    metavar="FILE|FORMAT",
    help="nginx.conf (or a file of log_format statements), or a log_format, for nginx access logs "
    "in a custom format (repeatable).",
)
@format_option
@output_option
def proxylogs(
    paths: tuple[str, ...], jobs: int, heartbeat: int | None, log_formats: tuple[str, ...], fmt: str, output: str | None
) -> None:
    """Read IIS W3C (ARR, Exchange front and back end), Exchange HttpProxy, HAProxy (HTTP, TCP) and nginx
    (access, error) logs (plain, .gz, .zip, folders, globs) and count statuses, decoded Win32 codes,
    termination states, upstream errors and long-lived requests; where the failed long polls end
    (`proxy.idle_timeout`: an idle timeout below the heartbeat)."""
    spec = {"paths": list(paths), "jobs": jobs, "heartbeat_seconds": heartbeat, "nginx_log_format": list(log_formats)}
    emit_bundle(run_check("proxylogs", spec), fmt, output)
