"""A site whose every input field and path carries a distinctive token, or hostile bytes.

Written in the real formats the probes read: a TMG 2010 W3C Firewall log and an ISA Web Proxy log
(`#Fields:` headers as TMG writes them), a Win32_Service CSV export (Export-Csv), a HOSTS file, a
site profile, and a real capture (a public pcap from the shared corpus). The network part (a DNS
server and an HTTPS server with a certificate generated here) is started by the tests on loopback.

`TOKENS` are the originals the redaction test looks for in every output; `HOSTILE` is what the
injection tests put into names and fields: a terminal title change, a screen clear, a CSI given as
its C1 byte, a bidi override, HTML and Markdown markup.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import CORPUS

# every one of these must be gone from redacted output
FOLDERS = ("CASEQX48213", "siteLONQ7")  # a case number and a site code in the path
LOG_FILE = "acmezqfw_ISALOG.w3c"
WEB_LOG_FILE = "acmezqweb_ISALOG.w3c"
SERVICES_FILE = "casqz9-services.csv"
CAPTURE_FILE = "lonqz-trace.pcap"
HOSTS_FILE = "hostsqz"
PROFILE_FILE = "zqsite.yaml"
TMG = "TMGZQ7"  # the log's computer column
RULE = "Publish AcmeZqMail OWA"  # a TMG rule name
WEB_RULE = "Allow ZqKiosk Browsing"
USER = "ZQACME\\jqzsmith"
WEB_USER = "kqwdoe@zqacme-corp.com"
PUBLISHED = "mail.zqacme-corp.com"
INTERNAL_NAME = "casqz9.zqacme.local"
CERT_FQDN = "webmail.zqacme-corp.com"
URL_HOST = "portal.qzpartner.net"
CLIENT = "198.51.100.77"
TMG_INT = "10.77.4.98"
CAS = "10.77.5.11"
WEB_DEST = "203.0.113.99"
SERVICE_HOST = "CASQZ9"

TOKENS = (
    *FOLDERS,
    "acmezqfw",
    "acmezqweb",
    "casqz9",
    "lonqz",
    "hostsqz",
    "zqsite",
    TMG,
    RULE,
    "AcmeZqMail",
    WEB_RULE,
    "ZqKiosk",
    "ZQACME",
    "jqzsmith",
    "kqwdoe",
    "zqacme-corp",
    "zqacme",
    PUBLISHED,
    INTERNAL_NAME,
    CERT_FQDN,
    URL_HOST,
    "qzpartner",
    CLIENT,
    TMG_INT,
    CAS,
    WEB_DEST,
    SERVICE_HOST,
)

ESC_TITLE = "\x1b]0;owned\x07"
ESC_CLEAR = "\x1b[2J"
C1_CSI = "\x9b31m"
BIDI = "\u202egpj.exe"
MARKUP = "<script>alert(1)</script> | [x](http://evil.example) `code`"
HOSTILE = ESC_TITLE + ESC_CLEAR + C1_CSI + BIDI + MARKUP
HOSTILE_CN = ESC_TITLE + ESC_CLEAR + C1_CSI + "\u202e<script>x</script>|`[a](b)"  # a CN holds 64 characters
# a log line with a C0 control is skipped as binary garbage (file:line), so log fields carry the rest
HOSTILE_FIELD = C1_CSI + BIDI + MARKUP
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e")

FIELDS = (
    "computer\tdate\ttime\tIP protocol\tsource\tdestination\toriginal client IP\tsource network\t"
    "destination network\taction\tstatus\trule\tapplication protocol\tbytes sent\tbytes received\t"
    "connection time\tsource name\tdestination name\tusername\tagent\tsession ID\tconnection ID"
)
WEB_FIELDS = (
    "c-ip\tcs-username\tc-agent\tsc-authenticated\tdate\ttime\ts-svcname\ts-computername\tcs-referred\t"
    "r-host\tr-ip\tr-port\ttime-taken\tcs-bytes\tsc-bytes\tcs-protocol\tcs-transport\ts-operation\t"
    "cs-uri\tcs-mime-type\ts-object-source\tsc-status\ts-cache-info\trule\tFilterInfo\tcs-Network\t"
    "sc-Network\terror-info\taction"
)


@dataclass(frozen=True)
class Site:
    folder: Path
    profile: Path
    log: Path
    web_log: Path
    services: Path
    capture: Path
    hosts: Path


def firewall_log(rule: str = RULE, computer: str = TMG, user: str = USER, dest_name: str = INTERNAL_NAME) -> str:
    rows = [
        (
            computer,
            "2026-11-27",
            "11:33:58",
            "TCP",
            f"{CLIENT}:64207",
            f"{WEB_DEST}:443",
            CLIENT,
            "External",
            "Local Host",
            "Initiated Connection",
            "0x0",
            rule,
            "HTTPS",
            "-",
            "-",
            "-",
            "-",
            PUBLISHED,
            user,
            "-",
            "0",
            "17201",
        ),
        (
            computer,
            "2026-11-27",
            "11:33:58",
            "TCP",
            f"{TMG_INT}:31024",
            f"{CAS}:443",
            TMG_INT,
            "Local Host",
            "Internal",
            "Initiated Connection",
            "0x0",
            rule,
            "HTTPS",
            "-",
            "-",
            "-",
            "-",
            dest_name,
            user,
            "-",
            "0",
            "17202",
        ),
        (
            computer,
            "2026-11-27",
            "11:34:15",
            "TCP",
            f"{TMG_INT}:31024",
            f"{CAS}:443",
            TMG_INT,
            "Local Host",
            "Internal",
            "Failed Connection Attempt",
            "0x80070040",
            rule,
            "HTTPS",
            "20412",
            "188323",
            "17016",
            "-",
            dest_name,
            user,
            "-",
            "0",
            "17202",
        ),
        (
            computer,
            "2026-11-27",
            "11:34:16",
            "TCP",
            f"{CLIENT}:64207",
            f"{WEB_DEST}:443",
            CLIENT,
            "External",
            "Local Host",
            "Closed Connection",
            "0x80074e20",
            rule,
            "HTTPS",
            "188323",
            "20412",
            "17430",
            "-",
            PUBLISHED,
            user,
            "-",
            "0",
            "17201",
        ),
    ]
    return (
        "#Software: Microsoft Forefront Threat Management Gateway 2010\r\n#Version: 1.0\r\n"
        "#Date: 2026-11-27 11:30:00\r\n#Fields: " + FIELDS + "\r\n" + "".join("\t".join(r) + "\r\n" for r in rows)
    )


def web_log(rule: str = WEB_RULE, user: str = WEB_USER) -> str:
    row = (
        CLIENT,
        user,
        "Mozilla/4.0",
        "Y",
        "2026-11-27",
        "11:34:15",
        "w3proxy",
        TMG,
        "-",
        URL_HOST,
        WEB_DEST,
        "443",
        "78",
        "489",
        "5591",
        "https",
        "TCP",
        "GET",
        f"https://{URL_HOST}/owa/",
        "text/html",
        "Inet",
        "64",
        "0x40000005",
        rule,
        "-",
        "Internal",
        "External",
        "0xd80",
        "Failed",
    )
    return (
        "#Software: Microsoft Internet Security and Acceleration Server 2004\r\n#Version: 2.0\r\n"
        "#Date: 2026-11-27 00:00:00\r\n#Fields: " + WEB_FIELDS + "\r\n" + "\t".join(row) + "\r\n"
    )


def services_csv(
    display: str = "Microsoft Exchange Forms-Based Authentication service", host: str = SERVICE_HOST
) -> str:
    head = '"PSComputerName","Name","DisplayName","State","StartMode","SystemName"'
    rows = [
        (host, "MSExchangeFBA", display, "Stopped", "Auto", host),
        (host, "MSExchangeIS", "Microsoft Exchange Information Store", "Running", "Auto", host),
        (host, "W3SVC", "World Wide Web Publishing Service", "Running", "Auto", host),
    ]
    return (
        "#TYPE System.Management.ManagementObject#root\\cimv2\\Win32_Service\r\n"
        + head
        + "\r\n"
        + "".join(",".join(f'"{v}"' for v in r) + "\r\n" for r in rows)
    )


def write_site(
    root: Path,
    *,
    rule: str = RULE,
    display: str | None = None,
    folders: tuple[str, ...] = FOLDERS,
    extra_profile: str = "",
) -> Site:
    folder = root.joinpath(*folders)
    folder.mkdir(parents=True)
    profile = folder / PROFILE_FILE
    profile.write_text(
        f"published_names: [{PUBLISHED}]\ncertificate_fqdn: {CERT_FQDN}\n"
        f"internal_name: {INTERNAL_NAME}\ninternal_addresses: [{CAS}]\n"
        f"tmg_addresses: [{TMG_INT}]\npublished: [owa, outlook-anywhere]\n"
        f"exchange_version: '2010'\n{extra_profile}",
        encoding="utf-8",
    )
    log = folder / LOG_FILE
    log.write_text(firewall_log(rule), encoding="utf-8", newline="")
    web = folder / WEB_LOG_FILE
    web.write_text(web_log(), encoding="utf-8", newline="")
    services = folder / SERVICES_FILE
    services.write_text(services_csv(*(() if display is None else (display,))), encoding="utf-8", newline="")
    capture = folder / CAPTURE_FILE
    shutil.copyfile(CORPUS / "pcaps" / "ppp_one_http_stream_fin.pcap", capture)
    hosts = folder / HOSTS_FILE
    hosts.write_bytes(f"# TMG HOSTS file\r\n{CAS}    {INTERNAL_NAME}    casqz9\r\n".encode())
    return Site(folder, profile, log, web, services, capture, hosts)


LOOPBACK_CAS = "127.0.0.10"


def loopback_checks(directory: Path, port: int, root_pem: Path) -> Path:
    """User checks overriding the shipped network checks by id: the same probes, aimed at the test's
    HTTPS server on loopback (the profile's internal address stays the site's)."""
    checks = directory / "checks"
    checks.mkdir()
    target = f"{LOOPBACK_CAS}:{port}"
    (checks / "network.yaml").write_text(
        f"""checks:
  - id: tls-internal-certificate
    probe: tls
    network: true
    kinds: [tls.certificate]
    requires: [internal_name]
    params: {{targets: ["{target}"], sni: "{{internal_name}}", internal_name: "{{internal_name}}",
              published_names: "{{published_names}}", certificate_fqdn: "{{certificate_fqdn}}", ca_file: "{root_pem}"}}
  - id: http-published-endpoints
    probe: http
    network: true
    kinds: [http.endpoint]
    requires: [internal_name, published]
    params: {{server: "{{internal_name}}", addresses: ["{LOOPBACK_CAS}"], published: "{{published}}",
              exchange_version: "{{exchange_version}}", port: {port}}}
  - id: tcp-internal-443
    probe: tcp
    network: true
    kinds: [tcp.reachability]
    requires: [internal_addresses]
    params: {{targets: ["{target}"]}}
""",
        encoding="utf-8",
    )
    return checks
