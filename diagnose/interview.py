"""Build the site profile by asking for what cannot be discovered.

`diagnose run` with no profile, on a terminal, reads what it can first and offers it as defaults:
the TMG log folders in their default locations (or the `--log` paths), the destinations, ports and
rules of the Status 64 entries in those logs, the HOSTS file's entries, and this host's addresses.
Then it asks, field by field, and offers to save the profile for next time.
"""

from __future__ import annotations

import ipaddress
import os
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from diagnose.errors import DiagnoseError
from diagnose.exchange import catalogue as endpoint_catalogue
from diagnose.profile import EXCHANGE_VERSIONS, PROTOCOLS, SiteProfile, profile_from_mapping
from diagnose.writing import write_file

# Where TMG 2010 and ISA 2004/2006 keep their text logs by default (under %ProgramFiles%).
DEFAULT_LOG_FOLDERS = (r"Microsoft Forefront Threat Management Gateway\Logs", r"Microsoft ISA Server\ISALogs")
PROTOCOL_WORDS = endpoint_catalogue(()).words  # ("outlook web", "owa"): checks/exchange-endpoints.yaml


@dataclass
class Discovery:
    """What could be read before asking anything."""

    log_paths: list[str] = field(default_factory=list)
    destinations: list[tuple[str, int | None, int]] = field(default_factory=list)  # (address, port, Status 64 count)
    rules: list[str] = field(default_factory=list)
    hosts: dict[str, list[str]] = field(default_factory=dict)  # address -> names
    local_addresses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_log_folders() -> list[str]:
    roots = {os.environ.get(k) for k in ("ProgramFiles", "ProgramW6432", "ProgramFiles(x86)")} - {None, ""}
    found = []
    for root in sorted(r for r in roots if r):
        for sub in DEFAULT_LOG_FOLDERS:
            folder = Path(root) / Path(*sub.split("\\"))
            if folder.is_dir():
                found.append(str(folder))
    return found


def discover(log_paths: Sequence[str], hosts_file: str | None, offline: bool) -> Discovery:
    from diagnose.probes import ProbeContext, get_probe
    from diagnose.probes.dns.hosts import read_hosts, system_hosts_path

    found = Discovery(list(log_paths) or default_log_folders())
    if found.log_paths:
        try:
            result = get_probe("logs")(ProbeContext(), {"paths": found.log_paths})
        except DiagnoseError as exc:
            found.notes.append(f"logs not read: {exc}")
        else:
            for fact in result.facts:
                count = fact.attrs.get("status64_count")
                if not isinstance(count, int) or count <= 0:
                    continue
                if fact.subject.startswith("server:"):
                    address, port = _split_endpoint(fact.subject[len("server:") :])
                    found.destinations.append((address, port, count))
                elif fact.subject.startswith("rule:"):
                    found.rules.append(fact.subject[len("rule:") :])
            found.destinations.sort(key=lambda d: -d[2])
    hosts_path = hosts_file or (None if offline else str(system_hosts_path()))
    if hosts_path:
        try:
            for entry in read_hosts(hosts_path).entries:
                names = [n for n in entry.names if not n.startswith(("localhost", "ip6-"))]
                if names:
                    found.hosts.setdefault(entry.address, []).extend(names)
        except DiagnoseError as exc:
            found.notes.append(f"HOSTS not read: {exc}")
    if not offline:
        found.local_addresses = _local_addresses()
    return found


def _split_endpoint(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port) if port.isdigit() else None
    return text, None


def _local_addresses() -> list[str]:
    try:
        import psutil

        out = []
        for addresses in psutil.net_if_addrs().values():
            for a in addresses:
                ip = a.address.split("%")[0]
                try:
                    parsed = ipaddress.ip_address(ip)
                except ValueError:
                    continue
                if not (parsed.is_loopback or parsed.is_link_local):
                    out.append(ip)
        return sorted(set(out))
    except Exception:
        return []


def suggestions(found: Discovery) -> dict[str, Any]:
    """Default answers from what was discovered."""
    defaults: dict[str, Any] = {}
    if found.destinations:
        address, port, _ = found.destinations[0]
        defaults["internal_addresses"] = [address]
        if port and port != 443:
            defaults["internal_port"] = port
        names = found.hosts.get(address, [])
        if names:
            defaults["internal_name"] = names[0]
            fqdns = [n for n in names if "." in n]
            if fqdns:
                defaults["certificate_fqdn"] = fqdns[-1]
    published = []
    for rule in found.rules:
        lowered = rule.lower()
        published += [p for word, p in PROTOCOL_WORDS if word in lowered and p not in published]
    defaults["published"] = published or ["owa", "outlook-anywhere"]
    if found.local_addresses:
        defaults["tmg_addresses"] = found.local_addresses
    defaults["exchange_version"] = "2010"
    return defaults


# (question, default shown) -> answer text, "" = default, None = stop
Ask = typing.Callable[[str, str], typing.Optional[str]]

QUESTIONS = (
    ("published_names", "Published host name(s), as users type them (comma-separated)"),
    ("internal_name", "The publishing rule's To name (internal site name)"),
    ("internal_addresses", "Internal address(es) of the Exchange server"),
    ("internal_port", "Port TMG bridges to on that server"),
    ("certificate_fqdn", "Name on the Exchange server's certificate"),
    ("tmg_addresses", "TMG's own addresses (or the publishing proxy's: ARR, HAProxy, nginx; comma-separated)"),
    ("published", f"Published protocols ({', '.join(PROTOCOLS)})"),
    ("exchange_version", f"Exchange version ({', '.join(EXCHANGE_VERSIONS)})"),
)
LISTS = {"published_names", "internal_addresses", "tmg_addresses", "published"}


def interview(found: Discovery, ask: Ask, say: Callable[[str], None]) -> SiteProfile | None:
    """Ask each profile field (discovered defaults in brackets). None if input ended first."""
    defaults = suggestions(found)
    if found.destinations:
        listed = ", ".join(f"{a}{':' + str(p) if p else ''} ({n})" for a, p, n in found.destinations[:3])
        say(f"Status 64 in the logs goes mostly to: {listed}")
    if found.rules:
        say(f"... through the rule(s): {', '.join(found.rules[:4])}")
    for note in found.notes:
        say(note)
    values: dict[str, Any] = {}
    for key, text in QUESTIONS:
        default = defaults.get(key)
        shown = ", ".join(default) if isinstance(default, list) else ("" if default is None else str(default))
        while True:
            answer = ask(text, shown)
            if answer is None:
                return None
            raw = answer.strip() or shown
            if not raw:
                break
            value: Any = [v.strip() for v in raw.split(",") if v.strip()] if key in LISTS else raw
            try:
                profile_from_mapping({key: value}, "answer")
            except DiagnoseError as exc:
                say(f"  {exc.message}")
                continue
            values[key] = value
            break
    if "certificate_fqdn" not in values and values.get("published_names"):
        values["certificate_fqdn"] = values["published_names"][0]
    return profile_from_mapping(values, "answers")


def save_profile(profile: SiteProfile, path: Path) -> None:
    write_file(
        path,
        "# diagnose site profile (written by `diagnose run`)\n" + yaml.safe_dump(profile.to_json(), sort_keys=False),
    )
