"""`diagnose probe capture PATH...`: how the TCP connections in packet captures ended."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from diagnose.cli.probe import emit_bundle, format_option, output_option, probe, run_check
from diagnose.errors import UsageError
from diagnose.facts import Fact, ProbeRun
from diagnose.probes.capture.tcp import TEARDOWNS
from diagnose.profile import SiteProfile, load_profile


@probe.command("capture")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--tmg",
    "tmg",
    multiple=True,
    metavar="ADDR",
    help="An address of the TMG (repeatable); default: the profile's, else inferred.",
)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Site profile (tmg_addresses, internal_addresses).",
)
@click.option(
    "--samples",
    type=click.IntRange(0, 1000),
    default=5,
    show_default=True,
    help="Sample connections kept per teardown label.",
)
@click.option("--connections", is_flag=True, help="One capture.connection fact per connection.")
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes (each tracks its share of the connections; same facts). "
    "Default: every CPU for captures of 32 MB or more, else 1.",
)
@click.option(
    "--log",
    "logs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="TMG logs whose Status 64 entries are matched to the connections (repeatable).",
)
@click.option("--tz", help="Time zone of local-time logs and captures (ISA text format, NetMon 2.0-2.2 and text).")
@format_option
@output_option
def capture_command(
    paths: tuple[Path, ...],
    tmg: tuple[str, ...],
    profile_path: Path | None,
    samples: int,
    connections: bool,
    jobs: int | None,
    logs: tuple[Path, ...],
    tz: str | None,
    fmt: str,
    output: str | None,
) -> None:
    """Read pcap, pcapng, NetMon .cap or NetMon text captures (gzip'd or not) and tell, for every
    TCP connection, how it ended (graceful, dirty-close, reset, refused, ...) and who ended it."""
    for addr in tmg:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise UsageError(f"--tmg {addr!r} is not an IP address") from None
    profile = load_profile(profile_path) if profile_path else SiteProfile()
    spec = {
        "paths": [str(p) for p in paths],
        "tmg_addresses": list(tmg),
        "samples": samples,
        "connections": connections,
        "strict": True,
        "jobs": jobs,
        "log_paths": [str(p) for p in logs],
        "tz": tz,
    }
    emit_bundle(run_check("capture", spec, profile), fmt, output, text=_text)


def _listed(value: object) -> tuple[str, ...]:
    """A list attribute's values (none when absent)."""
    return value if isinstance(value, tuple) else ()


def _text(facts: tuple[Fact, ...], run: ProbeRun) -> list[str]:
    lines = [f"probe capture: {run.status.value}" + (f" ({run.reason})" if run.reason else "")]
    summaries = [f for f in facts if f.kind == "capture.teardown_summary"]
    conns = [f for f in facts if f.kind == "capture.connection"]
    total = next((f for f in summaries if f.subject == "all"), None)
    if total is None:
        return lines
    a = total.attrs
    lines.append(f"files: {total.provenance.source}  formats: {', '.join(_listed(a.get('formats')))}")
    lines.append(
        f"frames: {a.get('packets', 0)}  TCP segments: {a.get('tcp_packets', 0)}  "
        f"connections: {a['connections']}  bad checksums: {a['bad_checksums']} (offload, not a fault)"
    )
    if a.get("tmg"):
        shown = "the originating side (the export has no address columns)" if a["tmg"] == "?" else a["tmg"]
        lines.append(
            f"TMG: {shown}"
            + (" (inferred: the side connecting to the servers' 443/80)" if a.get("tmg_inferred") else "")
        )
    # counts per label, one column per scope
    scopes = [f for f in summaries if f.attrs.get("scope") in ("all", "leg")]
    names = [f.subject for f in scopes]
    width = max(12, *(len(n) for n in names))
    lines.append("")
    lines.append(f"{'teardown':<22}" + "".join(f"{n:>{width + 2}}" for n in names))
    for label in (*TEARDOWNS, "dirty-close-by-tmg", "reset-by-server", "zero-window-resets"):
        key = label.replace("-", "_")
        lines.append(f"{label:<22}" + "".join(f"{f.attrs.get(key, 0):>{width + 2}}" for f in scopes))
    if a.get("loss_analysed"):  # packet loss as Zeek counts it (history t/T, g/G; missed_bytes)
        for label, key in (
            ("with retransmissions", "connections_with_retransmissions"),
            ("retransmitted packets", "retransmitted_packets"),
            ("with content gaps", "connections_with_gaps"),
            ("missed bytes", "missed_bytes"),
            ("lost before the end", "connections_with_loss_before_end"),
        ):
            lines.append(f"{label:<22}" + "".join(f"{f.attrs.get(key, '-'):>{width + 2}}" for f in scopes))
        lines.extend(f"  {cite}" for cite in _listed(a.get("loss_samples")))
    matched = next((f for f in facts if f.kind == "capture.status64_match"), None)
    if matched is not None:
        m = matched.attrs
        lines.append("")
        lines.append(
            f"Status 64 log entries during the capture: {m.get('entries', 0)}; matched {m.get('matched', 0)} "
            f"(dirty close by TMG {m.get('matched_dirty_close_by_tmg', 0)}, reset by the server "
            f"{m.get('matched_reset_by_server', 0)}, other {m.get('matched_other', 0)}), unmatched "
            f"{m.get('unmatched', 0)}; by {m.get('match_basis', '?')}, +-{m.get('tolerance_seconds', 0):g} s"
        )
        lines.extend(f"  {sample}" for sample in _listed(m.get("samples")))
        if m.get("matched_loss_analysed"):
            lines.append(
                f"matched connections that lost packets before their end: "
                f"{m.get('matched_with_loss_before_end', 0)} of {m['matched_loss_analysed']} "
                f"(dirty closes by TMG among them: {m.get('matched_dirty_close_with_loss', 0)})"
            )
            lines.extend(f"  {sample}" for sample in _listed(m.get("loss_samples")))
    servers = [f for f in summaries if f.attrs.get("scope") == "server"][:10]
    if servers:
        lines.append("")
        lines.append(
            "per server: "
            + "; ".join(
                f"{f.attrs['server']} {f.attrs['connections']} conns, dirty-close {f.attrs['dirty_close']}, "
                f"reset {f.attrs['reset']}, refused {f.attrs['refused']}"
                for f in servers
            )
        )
    for label in TEARDOWNS:
        rows = [f for f in conns if f.attrs.get("teardown") == label]
        if not rows:
            continue
        lines.append("")
        lines.append(f"== {label} ({a.get(label.replace('-', '_'), 0)} connections)")
        lines.append(
            f"  {'originator':<24} {'responder':<24} {'leg':<7} {'state':<6} {'history':<12} "
            f"{'FIN by':<7} {'RST by':<7} {'FIN->RST':>9}  frames"
        )
        for f in rows:
            c = f.attrs
            gap = f"{c['fin_to_rst_seconds']:.3f}s" if "fin_to_rst_seconds" in c else ""
            zw = " win0" if c.get("rst_zero_window") else ""
            lines.append(
                f"  {c['originator']:<24} {c['responder']:<24} {c['leg']:<7} {c['conn_state']:<6} "
                f"{c['history']:<12} {c['fin_by_role']:<7} {c['reset_by_role']:<7} {gap:>9}  "
                f"{f.provenance.source} {c['first_frame']}-{c['last_frame']}{zw}"
            )
    return lines
