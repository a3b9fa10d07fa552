"""`diagnose probe logs PATH...`: read TMG / ISA logs and print the `log.status_summary` facts."""

from __future__ import annotations

import sys

import click

from diagnose.cli.probe import emit_bundle, format_option, output_option, probe, run_check
from diagnose.profile import SiteProfile, load_profile
from diagnose.safetext import neutralise


class _Progress:
    """One self-overwriting status line on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.shown = False

    def __call__(self, check: str, message: str) -> None:
        if self.enabled:
            click.echo(f"\r\033[K{neutralise(f'{check}: {message}')}", err=True, nl=False)
            self.shown = True

    def close(self) -> None:
        if self.shown:
            click.echo("\r\033[K", err=True, nl=False)


@probe.command("logs")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--tz",
    default=None,
    metavar="ZONE",
    help="Time zone of the TMG server (IANA name), for formats that log local time.",
)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Site profile (YAML): tmg_addresses and internal_addresses decide the legs.",
)
@click.option("--tmg", "tmg", multiple=True, metavar="ADDR", help="An address of the TMG server (repeatable).")
@click.option(
    "--internal",
    "internal",
    multiple=True,
    metavar="ADDR",
    help="An address of a published internal server (repeatable).",
)
@click.option(
    "--jobs",
    type=click.IntRange(0, 64),
    default=0,
    show_default=True,
    help="Worker processes (0 = one per core, at most 2).",
)
@format_option
@output_option
def logs(
    paths: tuple[str, ...],
    tz: str | None,
    profile_path: str | None,
    tmg: tuple[str, ...],
    internal: tuple[str, ...],
    jobs: int,
    fmt: str,
    output: str | None,
) -> None:
    """Read TMG / ISA Firewall and Web Proxy logs (W3C, text, log-viewer copies, SQL CSV exports,
    syslog-relayed lines; plain, .gz, .zip, folders, globs) and summarise Status 64 and the codes
    that point to a cause."""
    profile = load_profile(profile_path) if profile_path else SiteProfile()
    profile = profile.merged({"tmg_addresses": list(tmg), "internal_addresses": list(internal)})
    progress = _Progress()
    try:
        bundle = run_check("logs", {"paths": list(paths), "tz": tz, "jobs": jobs}, profile, progress=progress)
    finally:
        progress.close()
    emit_bundle(bundle, fmt, output)
