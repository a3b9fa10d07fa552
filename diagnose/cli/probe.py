"""`diagnose probe KIND ...`: run one probe, print its facts (text or JSON)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

import click

from diagnose.cli.common import warnings_on_stderr, write_output
from diagnose.facts import EvidenceBundle, Fact, ProbeRun
from diagnose.profile import SiteProfile
from diagnose.safetext import neutralise, to_json

SCHEMA = "diagnose.probe/1"  # the JSON every `diagnose probe X --format json` prints
NO_DEADLINE = 24 * 3600.0

# Each subcommand lives in its own module, imported only when that subcommand is used (or help lists
# them all), so that `diagnose analyze` does not pay for the capture, log and network code.
SUBCOMMANDS = {
    "logs": "probe_logs",
    "capture": "probe_capture",
    "dns": "probe_network",
    "tls": "probe_network",
    "http": "probe_network",
    "tcp": "probe_network",
    "services": "probe_services",
    "host": "probe_services",
    "proxylogs": "probe_proxylogs",
}


class _ProbeGroup(click.Group):
    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in SUBCOMMANDS:
            importlib.import_module(f"diagnose.cli.{SUBCOMMANDS[cmd_name]}")
        if cmd_name not in self.commands and cmd_name in _probe_table():
            return generic_command(cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(SUBCOMMANDS) | set(_probe_table()))


def _probe_table() -> dict[str, str]:
    from diagnose.probes import PROBES

    return PROBES


def generic_command(name: str) -> click.Command:
    """`diagnose probe NAME` for a probe of the table without a command of its own (a new probe needs no
    CLI code): its check from the catalogue, filled from `--profile`, with `--param KEY=VALUE` over it
    (read by the probe's parameter class: an unknown key is one error line)."""

    def run(params: tuple[str, ...], profile: str | None, check: str | None, fmt: str, output: str | None) -> None:
        from diagnose.errors import UsageError
        from diagnose.profile import load_profile

        given: dict[str, Any] = {}
        for item in params:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"--param takes KEY=VALUE, got {item!r}")
            given.setdefault(key.strip(), []).append(value)
        values = {key: items[0] if len(items) == 1 else items for key, items in given.items()}
        bundle = run_check(name, values, load_profile(profile) if profile else None, check_id=check)
        emit_bundle(bundle, fmt, output)

    return click.Command(
        name,
        callback=run,
        help=f"Run the {name} probe through its check (parameters as in checks/).",
        params=[
            click.Option(
                ["-p", "--param", "params"],
                multiple=True,
                metavar="KEY=VALUE",
                help="A parameter of the probe (repeat a key for a list).",
            ),
            click.Option(
                ["--profile"], type=click.Path(dir_okay=False), help="Site profile filling the check's template."
            ),
            click.Option(["--check"], help="The catalogue's check to run (default: the first of this probe)."),
            click.Option(["--format", "fmt"], type=click.Choice(["text", "json"]), default="text", show_default=True),
            click.Option(["-o", "--output"], type=click.Path(dir_okay=False), help="Write to a file."),
        ],
    )


@click.group(cls=_ProbeGroup)
def probe() -> None:
    """Run one probe and print the facts it gathers."""


def run_check(
    probe_name: str,
    given: Mapping[str, Any],
    profile: SiteProfile | None = None,
    inputs: Any = None,
    check_id: str | None = None,
    deadline: float | None = None,
    progress: Any = None,
) -> EvidenceBundle:
    """A one-check plan run through `collect`, as `diagnose collect` runs it: the catalogue's check for
    the probe (`check_id`, else the first of that probe), its template filled from the profile and the
    inputs, the command line's values (`given`, where not empty) over it; in the main thread, as the
    probe commands always ran (their workers are forked: no forkserver left behind)."""
    from diagnose.collect import RunInputs, collect, plan_check

    warnings_on_stderr()  # the probe's warnings (its notes), one `diagnose: note:` line each, as `run` shows them
    plan, params = plan_check(probe_name, given, profile, inputs, check_id)
    return collect(
        [plan],
        SiteProfile(),
        RunInputs(),
        progress=progress,
        timeout=deadline or NO_DEADLINE,
        filled={plan.id: params},
        inline=True,
    )


def emit_bundle(bundle: EvidenceBundle, fmt: str, output: str | None = None, text: Any = None) -> None:
    """Print a one-check run: JSON `{"schema", "probe": {...run, notes}, "facts": [...], "excerpts"}`, or a
    readable listing (`text(facts, run)` where a probe has its own). Notes went to stderr as they came."""
    run = bundle.probes[0]
    if fmt == "json":
        out = to_json(
            {
                "schema": SCHEMA,
                "probe": run.to_json(),
                "facts": [f.to_json() for f in bundle.facts],
                "excerpts": dict(bundle.excerpts),
            }
        )
    else:
        lines = list((text or _text_lines)(bundle.facts, run))
        if bundle.excerpts and text is None:
            lines.append("excerpts:")
            lines += [f"    {where}: {raw}" for where, raw in bundle.excerpts.items()]
        out = "\n".join(neutralise(line) for line in lines)
    write_output(out, output)


def _text_lines(facts: Iterable[Fact], run: ProbeRun) -> Iterable[str]:
    yield f"probe {run.probe}: {run.status.value}" + (f" ({run.reason})" if run.reason else "")
    for fact in facts:
        yield f"{fact.kind} {fact.subject}"
        for key, value in fact.attrs.items():
            shown = ", ".join(value) if isinstance(value, tuple) else value
            yield f"    {key}: {shown}"
        yield f"    from: {fact.provenance.cite()}"


format_option = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output format."
)
output_option = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to FILE instead of stdout.",
)
