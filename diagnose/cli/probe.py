"""`diagnose probe KIND ...`: run one probe, print its facts (text or JSON)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import click

from diagnose.cli.common import write_output
from diagnose.facts import Fact, ProbeRun
from diagnose.probes import ProbeResult
from diagnose.safetext import neutralise, to_json

# Each subcommand lives in its own module, imported only when that subcommand is used (or help lists
# them all), so that `diagnose analyze` does not pay for the capture, log and network code.
SUBCOMMANDS = {"logs": "probe_logs", "capture": "probe_capture", "dns": "probe_network", "tls": "probe_network",
               "http": "probe_network", "tcp": "probe_network", "services": "probe_services",
               "host": "probe_services", "proxylogs": "probe_proxylogs"}


class _ProbeGroup(click.Group):
    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in SUBCOMMANDS:
            importlib.import_module(f"diagnose.cli.{SUBCOMMANDS[cmd_name]}")
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(SUBCOMMANDS))


@click.group(cls=_ProbeGroup)
def probe() -> None:
    """Run one probe and print the facts it gathers."""


def emit(result: ProbeResult, run: ProbeRun, fmt: str, output: str | None = None) -> None:
    """Print a probe's result: JSON `{"facts": [...], "probe": {...}}` or a readable listing."""
    if fmt == "json":
        text = to_json({"facts": [f.to_json() for f in result.facts], "probe": run.to_json(),
                        "excerpts": dict(result.excerpts)})
    else:
        text = "\n".join(neutralise(line) for line in _text_lines(result.facts, run))
    write_output(text, output)


def _text_lines(facts: Iterable[Fact], run: ProbeRun) -> Iterable[str]:
    yield f"probe {run.probe}: {run.status.value}" + (f" ({run.reason})" if run.reason else "")
    for fact in facts:
        yield f"{fact.kind} {fact.subject}"
        for key, value in fact.attrs.items():
            shown = ", ".join(value) if isinstance(value, tuple) else value
            yield f"    {key}: {shown}"
        yield f"    from: {fact.provenance.cite()}"


format_option = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                             show_default=True, help="Output format.")
output_option = click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
                             help="Write to FILE instead of stdout.")
