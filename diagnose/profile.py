"""The site profile: what is published, under which names, to which internal server.

Read from YAML (`--profile`), overridden field by field from options, and turned into a
`site.profile` fact so rules can ask e.g. "is OWA published on Exchange 2010?".
"""

from __future__ import annotations

import ipaddress
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from diagnose.errors import ConfigError
from diagnose.facts import Fact, make_fact
from diagnose.yamlio import load_yaml

if typing.TYPE_CHECKING:
    from diagnose.exchange import Catalogue

# PROTOCOLS and EXCHANGE_VERSIONS: the shipped table's lists (checks/exchange-endpoints.yaml), read when first
# asked for (module __getattr__ below), not when a command that never needs them imports this module;
# profiles are checked against the table in force
_SHIPPED_LISTS = {"PROTOCOLS": "protocol_names", "EXCHANGE_VERSIONS": "version_names"}
PROXY_PRODUCTS = ("tmg", "iis-arr", "haproxy", "nginx")  # what publishes Exchange; TMG when not given
ALIASES = {"proxy_addresses": "tmg_addresses"}  # product-neutral names of the TMG-era fields


@dataclass(frozen=True)
class SiteProfile:
    published_names: tuple[str, ...] = ()
    internal_name: str | None = None
    internal_addresses: tuple[str, ...] = ()
    internal_port: int | None = None  # the rule's bridging port to the server; 443 when not given
    certificate_fqdn: str | None = None
    tmg_addresses: tuple[str, ...] = ()
    published: tuple[str, ...] = ()
    exchange_version: str | None = None
    dns_servers: tuple[str, ...] = ()
    hosts_file: str | None = None
    proxy_product: str | None = None  # one of PROXY_PRODUCTS; None is TMG
    heartbeat_seconds: int | None = None  # the EAS heartbeat / keep-alive the clients use
    nginx_log_format: tuple[str, ...] = ()  # nginx.conf path(s) or log_format(s) of nginx access logs (proxylogs)

    @property
    def product(self) -> str:
        """The product that publishes Exchange (TMG unless the profile says otherwise)."""
        return self.proxy_product or "tmg"

    @property
    def proxy_addresses(self) -> tuple[str, ...]:
        """The publishing proxy's own addresses (TMG's, ARR's, HAProxy's or nginx's)."""
        return self.tmg_addresses

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v not in (None, ())}

    def merged(self, overrides: Mapping[str, Any]) -> SiteProfile:
        """A copy with every non-empty override applied (validated like the file)."""
        clean = {k: v for k, v in overrides.items() if v not in (None, (), [])}
        if not clean:
            return self
        return profile_from_mapping({**self.to_json(), **clean}, "command line")

    def to_fact(self) -> Fact:
        return make_fact(
            "site.profile",
            "site",
            "profile",
            published_names=list(self.published_names),
            internal_name=self.internal_name,
            internal_addresses=list(self.internal_addresses),
            certificate_fqdn=self.certificate_fqdn,
            tmg_addresses=list(self.tmg_addresses),
            published=list(self.published),
            exchange_version=self.exchange_version,
            proxy_product=self.proxy_product,
            heartbeat_seconds=self.heartbeat_seconds,
        )

    def is_empty(self) -> bool:
        return not self.to_json()


_LISTS = {f.name for f in fields(SiteProfile) if f.type.startswith("tuple")}
_ADDRESS_LISTS = {"internal_addresses", "tmg_addresses"}


def profile_from_mapping(data: Mapping[str, Any], source: str, lines: Any = None) -> SiteProfile:
    def at(*keys: Any) -> str:
        return lines.at(*keys) if lines is not None else source

    known = {f.name for f in fields(SiteProfile)}
    values: dict[str, Any] = {}
    for given, value in data.items():
        key = ALIASES.get(given, given)
        if key not in known:
            raise ConfigError(
                f"unknown profile field {given!r} (known: {', '.join(sorted(known | set(ALIASES)))})",
                at(given, "<key>"),
            )
        if key in values:
            raise ConfigError(f"{given} and {key} are the same field: give one of them", at(given, "<key>"))
        if key in _LISTS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{given} must be a list of strings", at(given))
            value = tuple(v.strip() for v in value)
            if key in _ADDRESS_LISTS:
                for i, item in enumerate(value):
                    try:
                        ipaddress.ip_address(item)
                    except ValueError:
                        from diagnose.redact import is_address_token

                        if not is_address_token(item):  # the profile of a redacted bundle
                            raise ConfigError(f"{given}: {item!r} is not an IP address", at(given, i)) from None
            if key == "published":
                protocols = endpoint_catalogue().protocol_names
                for i, item in enumerate(value):
                    if item not in protocols:
                        raise ConfigError(
                            f"published: unknown protocol {item!r} (one of {', '.join(protocols)})", at(given, i)
                        )
            if key == "published_names":
                value = tuple(v.lower().rstrip(".") for v in value)
        elif key == "heartbeat_seconds":
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 86400:
                raise ConfigError("heartbeat_seconds must be a number of seconds (1-86400)", at(given))
        elif key == "internal_port":
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise ConfigError("internal_port must be a port number (1-65535)", at(given))
        else:
            if isinstance(value, int) and not isinstance(value, bool) and key == "exchange_version":
                value = str(value)
            if not isinstance(value, str):
                raise ConfigError(f"{key} must be a string", at(given))
            if key == "proxy_product" and value not in PROXY_PRODUCTS:
                raise ConfigError(f"proxy_product must be one of {', '.join(PROXY_PRODUCTS)}", at(given))
            if key == "exchange_version":
                table = endpoint_catalogue()
                version = table.version_of(value)  # "Subscription Edition" is "SE"
                if version is None:
                    raise ConfigError(f"exchange_version must be one of {', '.join(table.version_names)}", at(given))
                value = version
            if key in ("internal_name", "certificate_fqdn"):
                value = value.lower().rstrip(".")
        values[key] = value
    return SiteProfile(**values)


def load_profile(path: Path | str) -> SiteProfile:
    data, lines = load_yaml(path, error=ConfigError)
    if data is None:
        return SiteProfile()
    if not isinstance(data, dict):
        raise ConfigError("a site profile is a mapping of fields", lines.at())
    return profile_from_mapping(data, str(path), lines)


def endpoint_catalogue(dirs: Sequence[Path] | None = None) -> Catalogue:
    """The Exchange endpoint table (diagnose/exchange.py), loaded when a profile names protocols or a version."""
    from diagnose.exchange import catalogue

    return catalogue(dirs)


def __getattr__(name: str) -> tuple[str, ...]:
    if name in _SHIPPED_LISTS:
        found: tuple[str, ...] = getattr(endpoint_catalogue(()), _SHIPPED_LISTS[name])
        globals()[name] = found
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
