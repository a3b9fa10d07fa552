"""Which leg of a published connection a record is on (client to TMG, or TMG to the published
server), from the site's known addresses, the networks TMG logs and the addresses themselves."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from diagnose.compat import ZoneInfo

_INTERNAL_NET_SKIP = frozenset({"", "-", "external", "local host", "vpn clients", "quarantined vpn clients"})


@dataclass(frozen=True)
class Site:
    """What the probe knows about the site, for deciding legs and local times."""

    tmg_addresses: frozenset[str] = frozenset()
    internal_addresses: frozenset[str] = frozenset()
    tz: str | None = None

    @property
    def zone(self) -> ZoneInfo | None:
        return _zone(self.tz) if self.tz else None


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=65536)
def split_address(text: str) -> tuple[str, str]:
    """`10.0.0.5:443` -> (10.0.0.5, 443); `[fe80::1]:443` and bare IPv6 handled; no port -> ''."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest.lstrip(":")
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    if text.count(":") > 1:
        try:
            ipaddress.ip_address(text)
            return text, ""
        except ValueError:
            host, _, port = text.rpartition(":")
            return host, port
    return text, ""


@lru_cache(maxsize=65536)
def _is_global(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def decide_leg(site: Site, src: str, dst: str, src_net: str, dst_net: str) -> str:
    """Which leg a record is on: "server" (TMG to the published server), "client" or "unknown".

    Known facts first: a source that is TMG (a profile/--tmg address, or TMG's own network "Local
    Host") or a destination that is a profile internal address is the server leg. A destination that
    is TMG itself is the client leg. Heuristics when neither is known: a destination network named
    by TMG as anything but External / Local Host / VPN clients (Internal, Perimeter, ...) is an
    internal server, so the server leg; otherwise an External source network, or a public source
    address when no network is logged, is a client; a private destination address with no network
    logged is taken as an internal server. Anything else (e.g. forward-proxy traffic from an
    internal client to the Internet) is "unknown".
    """
    sn, dn = src_net.lower(), dst_net.lower()
    if src in site.tmg_addresses or sn == "local host":
        return "server"
    if dst and dst in site.internal_addresses:
        return "server"
    if (dst and dst in site.tmg_addresses) or dn == "local host":
        return "client"
    if dn not in _INTERNAL_NET_SKIP:
        return "server"
    if sn == "external" or (not sn and src and _is_global(src)):
        return "client"
    if not dn and dst and not _is_global(dst) and not site.internal_addresses:
        try:
            ipaddress.ip_address(dst)
            return "server"
        except ValueError:
            pass
    return "unknown"
