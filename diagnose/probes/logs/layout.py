"""Field layouts of every TMG / ISA log format, mapped by name to a few canonical fields.

The scanners never rely on a column position they have not read from a header (W3C `#Fields:`,
the log viewer's header row, a SQL export's header), except for the ISA/TMG text format and
syslog-relayed lines, whose positions are fixed by the product (fields in bit order, disabled ones
written as `-`) and told apart by their field count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diagnose.compat import StrEnum


class LogKind(StrEnum):
    FIREWALL = "firewall"
    WEB = "web"
    MIXED = "mixed"  # log-viewer copies hold both, told apart by "Log Record Type"


# Canonical fields the probe reads.
CANON = (
    "date",
    "time",
    "logtime",
    "gmt",
    "source",
    "source_port",
    "dest",
    "dest_port",
    "orig_client",
    "src_net",
    "dst_net",
    "action",
    "status",
    "http_status",
    "rule",
    "method",
    "uri",
    "time_taken",
    "record_type",
    "protocol",
    "computer",
    "username",
)

# Names as written by W3C headers, the log viewer, and SQL tables (compared case-insensitively).
_NAMES: dict[str, tuple[str, ...]] = {
    "date": ("date", "log date"),
    "time": ("time",),
    "logtime": ("log time", "logtime"),
    "gmt": ("gmt time", "gmt log time", "gmtlogtime"),
    "source": ("source", "c-ip", "client ip", "client ip and port", "sourceip", "clientip"),
    "source_port": ("source port", "client port", "sourceport", "srcport", "s-port", "client source port"),
    "dest": (
        "destination",
        "r-ip",
        "destination ip",
        "destination ip and port",
        "destinationip",
        "desthostip",
    ),
    "dest_port": ("r-port", "destination port", "destinationport", "desthostport"),
    "orig_client": ("original client ip", "originalclientip"),
    "src_net": ("source network", "cs-network", "sourcenetwork", "srcnetwork"),
    "dst_net": ("destination network", "sc-network", "destinationnetwork", "dstnetwork"),
    "action": ("action",),
    "status": ("status", "sc-status", "result code", "resultcode"),
    "http_status": ("http status code",),
    "rule": ("rule",),
    "method": ("s-operation", "http method", "operation"),
    "uri": ("cs-uri", "url", "uri"),
    "time_taken": ("time-taken", "connection time", "processing time", "connectiontime", "processingtime"),
    "record_type": ("log record type",),
    # the transport (TCP/UDP); the log viewer's "Protocol" is the application protocol (HTTPS), which
    # says TCP as well; read only to match Status 64 entries to captured connections
    "protocol": ("ip protocol", "transport", "cs-transport", "protocol"),
    # read only from the records cited or looked at one by one, so the redactor knows them for names
    "computer": ("computer", "s-computername", "server name", "servername"),
    "username": ("username", "cs-username", "client username", "clientusername"),
}
NAME_TO_CANON = {name: canon for canon, names in _NAMES.items() for name in names}

WEB_MARKERS = frozenset({"c-ip", "sc-status", "s-operation", "cs-uri", "clientip", "desthost", "operation"})


@dataclass(frozen=True)
class Layout:
    """Where each canonical field sits in a record split into its columns."""

    kind: LogKind
    names: tuple[str, ...]
    index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...], kind: LogKind | None = None) -> Layout:
        index: dict[str, int] = {}
        lowered = [n.strip().lower() for n in names]
        for i, name in enumerate(lowered):
            canon = NAME_TO_CANON.get(name)
            if canon is not None and canon not in index:
                index[canon] = i
        if kind is None:
            kind = LogKind.WEB if WEB_MARKERS & set(lowered) else LogKind.FIREWALL
        return cls(kind, tuple(names), index)

    @property
    def width(self) -> int:
        return len(self.names)

    def has(self, canon: str) -> bool:
        return canon in self.index

    def looks_like_log(self) -> bool:
        return "status" in self.index and ("action" in self.index or "time" in self.index or "logtime" in self.index)


# ------------------------------------------------------------------ fixed layouts (text, syslog)

FIREWALL_ISA2004 = (
    "computer",
    "date",
    "time",
    "IP protocol",
    "source",
    "destination",
    "original client IP",
    "source network",
    "destination network",
    "action",
    "status",
    "rule",
    "application protocol",
    "bytes sent",
    "bytes sent intermediate",
    "bytes received",
    "bytes received intermediate",
    "connection time",
    "connection time intermediate",
    "source name",
    "destination name",
    "username",
    "agent",
    "session ID",
    "connection ID",
    "interface",
    "IP header",
    "protocol payload",
)
FIREWALL_ISA2006 = (
    "computer",
    "date",
    "time",
    "IP protocol",
    "source",
    "destination",
    "original client IP",
    "source network",
    "destination network",
    "action",
    "status",
    "rule",
    "application protocol",
    "bidirectional",
    "bytes sent",
    "bytes sent intermediate",
    "bytes received",
    "bytes received intermediate",
    "connection time",
    "connection time intermediate",
    "source proxy",
    "destination proxy",
    "source name",
    "destination name",
    "username",
    "agent",
    "session ID",
    "connection ID",
    "interface",
    "IP header",
    "protocol payload",
)
FIREWALL_TMG = (
    "computer",
    "date",
    "time",
    "IP protocol",
    "source",
    "destination",
    "original client IP",
    "source network",
    "destination network",
    "action",
    "status",
    "rule",
    "application protocol",
    "bidirectional",
    "bytes sent",
    "bytes sent intermediate",
    "bytes received",
    "bytes received intermediate",
    "connection time",
    "connection time intermediate",
    "destination name",
    "username",
    "agent",
    "session ID",
    "connection ID",
    "interface",
    "IP header",
    "protocol payload",
    "GMT Time",
    "ipsScanResult",
    "ipsSignature",
    "NATAddress",
    "FwcClientFqdn",
    "FwcAppPath",
    "FwcAppSHA1Hash",
    "FwcAppTrusState",
    "FwcAppInternalName",
    "FwcAppProductName",
    "FwcAppProductVersion",
    "FwcAppFileVersion",
    "FwcAppOrgFileName",
    "InternalServiceInfo",
    "ipsApplicationProtocol",
    "FwcVersion",
)
WEB_ISA2004 = (
    "c-ip",
    "cs-username",
    "c-agent",
    "sc-authenticated",
    "date",
    "time",
    "s-svcname",
    "s-computername",
    "cs-referred",
    "r-host",
    "r-ip",
    "r-port",
    "time-taken",
    "cs-bytes",
    "sc-bytes",
    "cs-protocol",
    "cs-transport",
    "s-operation",
    "cs-uri",
    "cs-mime-type",
    "s-object-source",
    "sc-status",
    "s-cache-info",
    "rule",
    "FilterInfo",
    "cs-Network",
    "sc-Network",
    "error-info",
    "action",
)
WEB_ISA2006 = (*WEB_ISA2004, "GMT Time", "AuthenticationServer")
WEB_TMG = (
    *WEB_ISA2006,
    "ipsScanResult",
    "ipsSignature",
    "ThreatName",
    "MalwareInspectionAction",
    "MalwareInspectionResult",
    "UrlCategory",
    "MalwareInspectionContentDeliveryMethod",
    "UagArrayId",
    "UagVersion",
    "UagModuleId",
    "UagId",
    "UagSeverity",
    "UagType",
    "UagEventName",
    "UagSessionId",
    "UagTrunkName",
    "UagServiceName",
    "UagErrorCode",
    "MalwareInspectionDuration",
    "MalwareInspectionThreatLevel",
    "InternalServiceInfo",
    "ipsApplicationProtocol",
    "NATAddress",
    "UrlCategorizationReason",
    "SessionType",
    "UrlDestHost",
    "client source port",
    "SoftBlockAction",
)

FIXED_FIREWALL = {
    len(n): Layout.from_names(n, LogKind.FIREWALL) for n in (FIREWALL_ISA2004, FIREWALL_ISA2006, FIREWALL_TMG)
}
FIXED_WEB = {len(n): Layout.from_names(n, LogKind.WEB) for n in (WEB_ISA2004, WEB_ISA2006, WEB_TMG)}
# In the text format a value may itself contain ", " (FilterInfo does); surplus pieces fold into it.
WEB_FILTERINFO = WEB_ISA2004.index("FilterInfo")

# Action values: text-log value / Live Logging string / SQL number -> one normalised name.
ACTIONS: dict[str, str] = {
    "-": "not_logged",
    "notlogged": "not_logged",
    "0": "not_logged",
    "bind": "bind",
    "1": "bind",
    "listen": "listen",
    "2": "listen",
    "ghbn": "gethostbyname",
    "gethostbyname": "gethostbyname",
    "3": "gethostbyname",
    "ghba": "gethostbyaddr",
    "gethostbyaddr": "gethostbyaddr",
    "4": "gethostbyaddr",
    "redirect_bind": "redirect_bind",
    "redirectbind": "redirect_bind",
    "redirect bind": "redirect_bind",
    "5": "redirect_bind",
    "establish": "initiated",
    "initiated connection": "initiated",
    "6": "initiated",
    "connect": "initiated",
    "terminate": "closed",
    "closed connection": "closed",
    "7": "closed",
    "denied": "denied",
    "denied connection": "denied",
    "8": "denied",
    "allowed": "allowed",
    "allowed connection": "allowed",
    "9": "allowed",
    "accept": "allowed",
    "failed": "failed",
    "failed connection attempt": "failed",
    "10": "failed",
    "intermediate": "connection_status",
    "connection status": "connection_status",
    "11": "connection_status",
    "successful_connection": "vpn_initiated",
    "initiated vpn connection": "vpn_initiated",
    "12": "vpn_initiated",
    "unsuccessful_connection": "vpn_failed",
    "failed vpn connection attempt": "vpn_failed",
    "13": "vpn_failed",
    "disconnection": "vpn_closed",
    "disconnect": "vpn_closed",
    "closed vpn connection": "vpn_closed",
    "14": "vpn_closed",
    "user_cleared_quarantine": "user_cleared_quarantine",
    "15": "user_cleared_quarantine",
    "quarantine_timeout": "quarantine_timeout",
    "16": "quarantine_timeout",
    "user_quarantined": "user_quarantined",
    "17": "user_quarantined",
}
# Actions that are not a connection or request of their own (progress and close rows).
NOT_CONNECTIONS = frozenset({"closed", "connection_status", "not_logged", "vpn_closed"})

# Live Logging strings, for log-viewer copies whose whitespace was collapsed.
ACTION_STRINGS = (
    "Failed Connection Attempt",
    "Initiated Connection",
    "Closed Connection",
    "Denied Connection",
    "Allowed Connection",
    "Connection Status",
    "Initiated VPN Connection",
    "Failed VPN Connection Attempt",
    "Closed VPN Connection",
)


def normalise_action(text: str) -> str:
    key = text.strip().lower()
    return ACTIONS.get(key, key.replace(" ", "_") or "not_logged")
