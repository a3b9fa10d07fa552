"""`diagnose probe services` and `diagnose probe host`."""

from __future__ import annotations

import click

from diagnose.cli.probe import emit_bundle, format_option, output_option, probe, run_check
from diagnose.profile import EXCHANGE_VERSIONS, PROTOCOLS, SiteProfile, load_profile


def _profile(profile_path: str | None) -> SiteProfile:
    return load_profile(profile_path) if profile_path else SiteProfile()


@probe.command("services")
@click.option(
    "--services-export",
    "exports",
    type=click.Path(dir_okay=False),
    multiple=True,
    help="Exported list (repeatable): sc query text, Get-Service/Win32_Service CSV/JSON, systemctl show.",
)
@click.option(
    "--services-host",
    "host",
    default=None,
    help="Query a remote Windows server with sc.exe (needs Windows and rights on HOST).",
)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Site profile (exchange_version and published protocols rate the impact).",
)
@click.option(
    "--exchange-version",
    default=None,
    help=f"Exchange version (overrides the profile): {', '.join(EXCHANGE_VERSIONS)}, or another name the "
    "endpoint table gives one (e.g. Subscription Edition).",
)
@click.option(
    "--published",
    multiple=True,
    type=click.Choice(PROTOCOLS),
    help="A published protocol (repeatable; overrides the profile).",
)
@click.option("--all", "emit_all", is_flag=True, help="Report every service read, not only the catalogue's.")
@format_option
@output_option
def services_command(
    exports: tuple[str, ...],
    host: str | None,
    profile_path: str | None,
    exchange_version: str | None,
    published: tuple[str, ...],
    emit_all: bool,
    fmt: str,
    output: str | None,
) -> None:
    """State of the Exchange, IIS and TMG services, and which published protocols they break.

    Without --services-export or --services-host, reads this machine (psutil on Windows, systemd on
    Linux); where neither is possible the probe says `unavailable`.
    """
    if exports and host:
        raise click.UsageError("give either --services-export or --services-host, not both")
    spec = {
        "export": list(exports),
        "host": host,
        "exchange_version": exchange_version,
        "published": list(published),
        "all": emit_all,
    }
    emit_bundle(run_check("services", spec, _profile(profile_path), check_id="exchange-services"), fmt, output)


@probe.command("host")
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Site profile (internal_addresses mark the TMG-to-server leg).",
)
@click.option("--server", "servers", multiple=True, help="Address of a published internal server (repeatable).")
@click.option(
    "--remote-port",
    "remote_ports",
    multiple=True,
    type=click.IntRange(1, 65535),
    help="Only this server port counts as the server leg (repeatable).",
)
@click.option("--process", "processes", multiple=True, help="Proxy process name (default wspsrv.exe; repeatable).")
@click.option(
    "--export",
    "exports",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Read this export from the TMG server instead of this host (repeatable): netstat -ano/-anob, "
    "netsh int ipv4 show dynamicport tcp, System events 4227/4231 as CSV, XML or wevtutil text.",
)
@format_option
@output_option
def host_command(
    profile_path: str | None,
    servers: tuple[str, ...],
    remote_ports: tuple[int, ...],
    processes: tuple[str, ...],
    exports: tuple[str, ...],
    fmt: str,
    output: str | None,
) -> None:
    """TCP connections by state, ephemeral port usage, TIME_WAIT length and the proxy process on this host,
    or, with --export, the same from files exported on the TMG server (plus Tcpip events 4227/4231)."""
    spec = {
        "server_addresses": list(servers),
        "remote_ports": list(remote_ports),
        "process_names": list(processes),
        "exports": list(exports),
    }
    bundle = run_check("host", spec, _profile(profile_path), check_id="host-exports" if exports else "host-tcp-state")
    emit_bundle(bundle, fmt, output)
