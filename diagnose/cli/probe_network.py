"""`diagnose probe dns|tls|http|tcp ...`: the network probes, one at a time, facts out.

    diagnose probe dns NAME... [--dns-server ADDR[:PORT]]... [--hosts-file PATH] [--expect ADDR]...
                      [--dns-recorded FILE]... [--offline]
    diagnose probe tls HOST[:PORT]... [--name FQDN]... [--sni NAME] [--ca-file PEM]
    diagnose probe http URL... [--connect ADDR[:PORT]]
    diagnose probe tcp HOST:PORT...

With `--profile FILE` and no arguments, each probe takes its targets from the site profile, as the
checks catalogue does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from diagnose.cli.probe import emit_bundle, format_option, output_option, probe, run_check
from diagnose.kinds import fact_kinds
from diagnose.profile import SiteProfile, load_profile

profile_option = click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Site profile (YAML): published names, internal name and addresses...",
)
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.05),
    default=None,
    help="Seconds allowed per operation (connect, handshake, query, request).",
)
deadline_option = click.option(
    "--deadline", type=click.FloatRange(min=0.1), default=None, help="Seconds allowed for the whole probe."
)


def _profile(path: str | None, overrides: Mapping[str, Any] | None = None) -> SiteProfile:
    profile = load_profile(path) if path else SiteProfile()
    return profile.merged(overrides or {})


def _run(
    name: str, profile: SiteProfile, spec: dict[str, Any], fmt: str, output: str | None, deadline: float | None
) -> None:
    bundle = run_check(name, spec, profile, deadline=deadline)
    fact_kinds().check(bundle.facts, f"{name} probe")
    emit_bundle(bundle, fmt, output)


@probe.command("dns")
@click.argument("names", nargs=-1)
@click.option(
    "--dns-server",
    "dns_servers",
    multiple=True,
    metavar="ADDR[:PORT]",
    help="DNS server to ask (repeatable; default: the profile's, else this host's).",
)
@click.option(
    "--hosts-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="HOSTS file read first (Windows or POSIX format; default: this host's).",
)
@click.option("--no-hosts", is_flag=True, help="Do not read any HOSTS file.")
@click.option(
    "--dns-recorded",
    "--recorded",
    "recorded",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Answers recorded on the TMG host, replayed as its servers gave them: Windows "
    "nslookup or Resolve-DnsName output (saved or pasted), or BIND nslookup or dig output (repeatable).",
)
@click.option("--offline", is_flag=True, help="Ask no DNS server: only the HOSTS file and the recorded answers.")
@click.option(
    "--expect",
    "expect",
    multiple=True,
    metavar="ADDR",
    help="The internal server's address (repeatable; default: the profile's internal_addresses).",
)
@click.option("--certificate-fqdn", default=None, help="Also resolve the certificate's name.")
@click.option("--internal-name", default=None, help="Also resolve the publishing rule's To name.")
@profile_option
@timeout_option
@deadline_option
@format_option
@output_option
def dns_command(
    names: tuple[str, ...],
    dns_servers: tuple[str, ...],
    hosts_file: str | None,
    no_hosts: bool,
    recorded: tuple[str, ...],
    offline: bool,
    expect: tuple[str, ...],
    certificate_fqdn: str | None,
    internal_name: str | None,
    profile_path: str | None,
    timeout: float | None,
    deadline: float | None,
    fmt: str,
    output: str | None,
) -> None:
    """Resolve NAMEs as the TMG host does: HOSTS file first, then each DNS server.

    Offline, the servers' answers come from files recorded on the TMG host (`--dns-recorded FILE
    --offline`), e.g. `nslookup mail.contoso.com > dns.txt 2>&1` in cmd.exe, a pasted console session, or
    `Resolve-DnsName mail.contoso.com > dns.txt` in PowerShell.
    """
    profile = _profile(profile_path, {"dns_servers": list(dns_servers), "hosts_file": hosts_file})
    spec: dict[str, Any] = {"names": list(names), "certificate_fqdn": certificate_fqdn, "internal_name": internal_name}
    spec.update(
        {
            "servers": list(profile.dns_servers),
            "hosts_file": profile.hosts_file,
            "expect": list(expect),
            "timeout": timeout,
            "use_hosts": not no_hosts,
            "recorded": list(recorded),
            "offline": offline,
        }
    )
    _run("dns", profile, spec, fmt, output, deadline)


@probe.command("tls")
@click.argument("targets", nargs=-1, metavar="HOST[:PORT]...")
@click.option(
    "--name", "names", multiple=True, metavar="FQDN", help="A published name the certificate must carry (repeatable)."
)
@click.option("--sni", default=None, help="Name sent in the handshake (default: the internal name).")
@click.option("--internal-name", default=None, help="The publishing rule's To name.")
@click.option("--certificate-fqdn", default=None, help="The name expected on the certificate.")
@click.option(
    "--ca-file", type=click.Path(dir_okay=False), default=None, help="Extra trusted roots (PEM) for the trust check."
)
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Default port (443).")
@profile_option
@timeout_option
@deadline_option
@format_option
@output_option
def tls_command(
    targets: tuple[str, ...],
    names: tuple[str, ...],
    sni: str | None,
    internal_name: str | None,
    certificate_fqdn: str | None,
    ca_file: str | None,
    port: int | None,
    profile_path: str | None,
    timeout: float | None,
    deadline: float | None,
    fmt: str,
    output: str | None,
) -> None:
    """Fetch and examine the certificate each HOST presents (without trusting it)."""
    profile = _profile(profile_path)
    spec = {
        "targets": list(targets),
        "published_names": list(names),
        "sni": sni,
        "internal_name": internal_name,
        "certificate_fqdn": certificate_fqdn,
        "ca_file": ca_file,
        "port": port,
        "timeout": timeout,
    }
    _run("tls", profile, spec, fmt, output, deadline)


@probe.command("http")
@click.argument("urls", nargs=-1, metavar="URL...")
@click.option(
    "--connect",
    "connect_to",
    default=None,
    metavar="ADDR[:PORT]",
    help="Connect here instead of the URL's host (Host header and SNI stay the URL's).",
)
@click.option(
    "--published",
    multiple=True,
    metavar="PROTOCOL",
    help="With --profile and no URL: protocols to request (default: the profile's).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="With --profile: the port (443).")
@profile_option
@timeout_option
@deadline_option
@format_option
@output_option
def http_command(
    urls: tuple[str, ...],
    connect_to: str | None,
    published: tuple[str, ...],
    port: int | None,
    profile_path: str | None,
    timeout: float | None,
    deadline: float | None,
    fmt: str,
    output: str | None,
) -> None:
    """Request URLs (or, with --profile, every published Exchange endpoint) and judge the answers."""
    profile = _profile(profile_path)
    spec: dict[str, Any] = {
        "urls": list(urls),
        "connect": connect_to,
        "published": list(published),
        "port": port,
        "timeout": timeout,
    }
    _run("http", profile, spec, fmt, output, deadline)


@probe.command("tcp")
@click.argument("targets", nargs=-1, metavar="HOST:PORT...")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Default port (443).")
@profile_option
@timeout_option
@deadline_option
@format_option
@output_option
def tcp_command(
    targets: tuple[str, ...],
    port: int | None,
    profile_path: str | None,
    timeout: float | None,
    deadline: float | None,
    fmt: str,
    output: str | None,
) -> None:
    """Open a TCP connection to each target and say how it went."""
    profile = _profile(profile_path)
    _run("tcp", profile, {"targets": list(targets), "port": port, "timeout": timeout}, fmt, output, deadline)
