"""`diagnose run`, `collect`, `analyze` and `examples`: collect -> infer -> report."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from diagnose.cli.common import engine_option, note, rules_option
from diagnose.collect import RunInputs
from diagnose.errors import ConfigError, UsageError
from diagnose.facts import EvidenceBundle, load_bundle
from diagnose.paths import data_dir, use_check_dirs
from diagnose.profile import SiteProfile, load_profile
from diagnose.safetext import neutralise
from diagnose.session import Plan, ReportRequest, Session, leave_if_interrupted, redacted
from diagnose.yamlio import load_yaml


def input_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The evidence inputs shared by `run` and `collect`."""
    options = [
        click.option("--profile", type=click.Path(dir_okay=False), help="Site profile (YAML)."),
        click.option("--log", "logs", multiple=True, type=click.Path(), help="TMG/ISA log file, folder or glob."),
        click.option(
            "--proxy-log",
            "proxy_logs",
            multiple=True,
            type=click.Path(),
            help="IIS (ARR, Exchange), Exchange HttpProxy, HAProxy or nginx log file, folder or glob.",
        ),
        click.option("--capture", "captures", multiple=True, type=click.Path(), help="Packet capture file."),
        click.option(
            "--evidence",
            "evidence",
            multiple=True,
            type=click.Path(dir_okay=False),
            help='Recorded facts (a bundle or {"facts": [...]}).',
        ),
        click.option("--dns-server", "dns_servers", multiple=True, help="Resolver ADDR[:PORT] (repeatable)."),
        click.option("--hosts-file", type=click.Path(dir_okay=False), help="HOSTS file as TMG has it."),
        click.option(
            "--dns-recorded",
            "dns_recorded",
            multiple=True,
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="DNS answers recorded on TMG, replayed instead of asking a server "
            "(nslookup, Resolve-DnsName or dig output; repeatable).",
        ),
        click.option(
            "--services-export",
            "services_export",
            multiple=True,
            type=click.Path(dir_okay=False),
            help="Exported service list of one Exchange server (repeatable: one per CAS).",
        ),
        click.option("--services-host", help="Query services on HOST with sc.exe."),
        click.option(
            "--host-export",
            "host_exports",
            multiple=True,
            type=click.Path(dir_okay=False),
            metavar="FILE",
            help="Exported on TMG (repeatable): netstat -ano/-anob, netsh int ipv4 show "
            "dynamicport tcp, System events 4227/4231 as CSV, XML or wevtutil text.",
        ),
        click.option("--tmg", "tmg", multiple=True, help="A TMG address (repeatable)."),
        click.option(
            "--ca-file",
            type=click.Path(dir_okay=False),
            help="CA certificates (PEM) TMG trusts, e.g. exported from its computer store.",
        ),
        click.option("--tz", help="Time zone of ISA text-format logs (e.g. Europe/Berlin)."),
        click.option(
            "--checks",
            "check_dirs",
            multiple=True,
            type=click.Path(file_okay=False),
            help="Extra checks directory (repeatable). Also DIAGNOSE_CHECKS.",
        ),
        click.option("--timeout", type=float, default=60.0, show_default=True, help="Overall probe deadline, s."),
        click.option("--answers", "answers_file", type=click.Path(dir_okay=False), help="Answers file (YAML)."),
        click.option("--no-input", is_flag=True, help="Never ask questions."),
        click.option(
            "--offline",
            is_flag=True,
            help="Send nothing on the network: no DNS queries, no connections; read only the files given.",
        ),
        click.option("--progress/--quiet", default=None, help="Progress lines on stderr (default: on a terminal)."),
        click.option(
            "--evidence-dir",
            "evidence_dirs",
            multiple=True,
            type=click.Path(exists=True),
            help="A case folder or zip: every artefact in it is recognised by its content and read as "
            "if given with the options above (repeatable).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["text", "json", "markdown", "html"]),
            default="text",
            show_default=True,
        ),
        click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to FILE."),
        click.option("--why", is_flag=True, help="Show every rule considered and why it fired or not."),
        click.option(
            "--fail-on",
            type=click.FloatRange(-1, 1),
            default=None,
            help="Exit 1 when a misconfiguration/fault cause reaches this certainty.",
        ),
        click.option("--strict", is_flag=True, help="Exit 4 when evidence is incomplete."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


redact_option = click.option(
    "--redact", is_flag=True, help="Pseudonymise addresses, host names, domains and users (bundle and report)."
)


def plan_from_options(o: dict[str, Any], questions: Any) -> Plan:
    from diagnose.answers import load_answers

    profile = load_profile(o["profile"]) if o.get("profile") else SiteProfile()
    if o.get("tmg"):
        profile = profile.merged({"tmg_addresses": list(profile.tmg_addresses) + list(o["tmg"])})
    inputs = RunInputs(
        list(o.get("logs") or ()),
        list(o.get("captures") or ()),
        list(o.get("evidence") or ()),
        list(o.get("dns_servers") or ()),
        o.get("hosts_file"),
        list(o.get("services_export") or ()),
        o.get("services_host"),
        o.get("tz"),
        offline=bool(o.get("offline")),
        extra={
            "ca_file": o.get("ca_file"),
            "dns_recorded": list(o.get("dns_recorded") or ()),
            "host_exports": list(o.get("host_exports") or ()),
            "proxy_log_paths": list(o.get("proxy_logs") or ()),
        },
    )
    answers = load_answers(o["answers_file"], questions) if o.get("answers_file") else {}
    return Plan(profile, inputs, answers, profile_path=o.get("profile"))


def interview_for_profile(plan: Plan) -> None:
    """No profile on a terminal: discover what can be read, ask for the rest, offer to save it."""
    from diagnose.interview import discover, interview, save_profile

    inputs = plan.inputs
    found = discover(inputs.log_paths, inputs.hosts_file, inputs.offline)
    if found.log_paths and not inputs.log_paths:
        inputs.log_paths = list(found.log_paths)
    click.echo("No site profile given: a few questions about the publishing (Enter takes the [default]).", err=True)

    def ask(text: str, default: str) -> str | None:
        click.echo(neutralise(f"  {text}" + (f" [{default}]" if default else "") + ": "), err=True, nl=False)
        line = sys.stdin.readline()
        return None if not line else line.rstrip("\n")

    profile = interview(found, ask, lambda text: note(f"  {text}"))  # defaults read from the logs: neutralised
    if profile is None:
        click.echo("", err=True)
        return
    plan.profile = profile.merged(plan.profile.to_json())
    answer = ask("Save this profile for next time? (a file name, or n)", "diagnose-profile.yaml")
    if answer is not None and answer.strip().lower() not in ("n", "no"):
        target = Path(answer.strip() or "diagnose-profile.yaml")
        save_profile(plan.profile, target)
        click.echo(f"  saved {target}; next time: diagnose run --profile {target}", err=True)


def plan_from_example(name: str, questions: Any) -> Plan:
    """An example runs exactly like a real run, from the files it ships, offline."""
    from diagnose.answers import check_answers

    folder = data_dir("examples") / name
    manifest = folder / "example.yaml"
    if not manifest.is_file():
        raise UsageError(f"no example {name!r} (see `diagnose examples`)")
    data, lines = load_yaml(manifest, error=ConfigError)
    inputs_raw = data.get("inputs", {})

    def files(key: str) -> list[str]:
        return [str(folder / p) for p in inputs_raw.get(key, [])]

    profile = load_profile(folder / data["profile"]) if data.get("profile") else SiteProfile()
    single = {k: str(folder / inputs_raw[k]) for k in ("hosts_file",) if inputs_raw.get(k)}
    exports = inputs_raw.get("services_export") or []
    exports = [exports] if isinstance(exports, str) else exports
    recorded = inputs_raw.get("dns_recorded") or []
    recorded = [recorded] if isinstance(recorded, str) else recorded
    inputs = RunInputs(
        files("log"),
        files("capture"),
        files("evidence"),
        [],
        single.get("hosts_file"),
        [str(folder / p) for p in exports],
        None,
        inputs_raw.get("tz"),
        offline=True,
        extra={"dns_recorded": [str(folder / p) for p in recorded], "host_exports": files("host_export")},
    )
    answers = check_answers(data.get("answers", {}), questions, lines) if data.get("answers") else {}
    return Plan(
        profile,
        inputs,
        answers,
        str(data.get("description", "")).strip(),
        str(folder / data["profile"]) if data.get("profile") else None,
    )


def terminal_ask(prompt: Any, number: int) -> str | None:
    """Ask one question on the terminal (stderr); `?` explains, `s` skips, end of input stops."""
    from diagnose.guide import SKIP
    from diagnose.guide import why as explain

    choices = "/".join(prompt.question.choices)
    while True:
        click.echo(f"\nQuestion {number}: {prompt.question.text} [{choices}, ? why, s skip]: ", err=True, nl=False)
        line = sys.stdin.readline()
        if not line:  # end of input: stop asking, report what is known
            click.echo("", err=True)
            return None
        answer = line.strip().lower()
        if answer == "?":
            for text in explain(prompt):  # may quote the evidence
                note(f"  {text}")
            continue
        if answer in ("s", SKIP):
            return SKIP
        matches = [c for c in prompt.question.choices if c.lower() == answer or c.lower().startswith(answer)]
        if answer and len(matches) == 1:
            return matches[0]
        click.echo(f"  please answer one of: {choices} (or ? / s)", err=True)


@click.command()
@input_options
@output_options
@rules_option
@click.option("--example", help="Run a bundled example case (see `diagnose examples`).")
@click.option("--save-evidence", type=click.Path(dir_okay=False), help="Also save the evidence bundle.")
@redact_option
@engine_option
def run(**o: Any) -> None:
    """Gather the evidence, reason over it and report: the whole diagnosis."""
    use_check_dirs(o["check_dirs"])
    session = Session.start(o["rule_dirs"], o["engine_name"], terminal_ask)  # the engine loads during collection
    if o["example"]:
        plan = plan_from_example(o["example"], session.rulebook.questions)
        plan.answers.update(plan_from_options({"answers_file": o["answers_file"]}, session.rulebook.questions).answers)
    else:
        plan = plan_from_options(o, session.rulebook.questions)
        if not o["profile"] and interactive(o["no_input"]):
            interview_for_profile(plan)
    bundle = session.collect(plan, o, o["redact"])
    session.finish(bundle, report_request(o))


@click.command(name="collect")
@input_options
@click.option("--example", help="Collect a bundled example case's evidence.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Bundle to write.")
@redact_option
def collect_cmd(output: str, example: str | None, redact: bool, **o: Any) -> None:
    """Gather the evidence into a bundle, without reasoning (no inference engine is loaded)."""
    use_check_dirs(o["check_dirs"])
    session = Session.collecting()
    plan = (
        plan_from_example(example, session.rulebook.questions)
        if example
        else plan_from_options(o, session.rulebook.questions)
    )
    bundle = session.collect(plan, o, redact)
    bundle.save(output)
    leave_if_interrupted(bundle, output)
    note(f"diagnose: wrote {output}: {len(bundle.facts)} facts from {len(bundle.probes)} checks")


def interactive(no_input: bool | None) -> bool:
    """Questions are asked only on a terminal, and never with --no-input."""
    return not no_input and sys.stdin.isatty() and sys.stderr.isatty()


def report_request(o: dict[str, Any]) -> ReportRequest:
    """The report and exit options of `run` and `analyze` (output_options, --save-evidence, --no-input)."""
    return ReportRequest(
        o["fmt"], o["output"], o["why"], o["fail_on"], o["strict"], o["save_evidence"], interactive(o["no_input"])
    )


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--answers", "answers_file", type=click.Path(dir_okay=False), help="Answers file (YAML).")
@click.option("--no-input", is_flag=True, help="Never ask questions.")
@click.option("--save-evidence", type=click.Path(dir_okay=False), help="Save the bundle with the answers given.")
@click.option("--profile", type=click.Path(dir_okay=False), help="Site profile (YAML), for a case folder.")
@click.option("--tz", help="Time zone of ISA text-format logs, for a case folder.")
@click.option("--tmg", "tmg", multiple=True, help="A TMG address (repeatable), for a case folder.")
@output_options
@rules_option
@redact_option
@engine_option
def analyze(bundle: str, **o: Any) -> None:
    """Reason over an evidence bundle, or over a case folder or zip (every file in it recognised by its
    content, read offline), and report."""
    from diagnose.cli.case import is_case

    session = Session.start(o["rule_dirs"], o["engine_name"], terminal_ask)  # the engine loads while reading
    if is_case(bundle):
        options = {
            "profile": o["profile"],
            "tz": o["tz"],
            "tmg": o["tmg"],
            "answers_file": o["answers_file"],
            "offline": True,
            "evidence_dirs": [bundle],
        }
        evidence = session.collect(plan_from_options(options, session.rulebook.questions), options, o["redact"])
    elif o["profile"] or o["tz"] or o["tmg"]:
        raise UsageError("--profile, --tz and --tmg are for a case folder; a bundle has its own")
    else:
        evidence = redacted(read_bundle(bundle, o["answers_file"], session.rulebook.questions), o["redact"])
    session.finish(evidence, report_request(o))


def read_bundle(path: str, answers_file: str | None, questions: Any) -> EvidenceBundle:
    """A saved bundle, its facts checked against the fact kinds, with the answers of `answers_file` added."""
    from diagnose.answers import load_answers
    from diagnose.kinds import fact_kinds

    evidence = load_bundle(path)
    fact_kinds().check_bundle(evidence, path)
    if not answers_file:
        return evidence
    return EvidenceBundle(
        **{**evidence.__dict__, "answers": {**evidence.answers, **load_answers(answers_file, questions)}}
    )


@click.command()
def examples() -> None:
    """List the bundled example cases."""
    root = data_dir("examples")
    for manifest in sorted(root.glob("*/example.yaml")):
        data, _ = load_yaml(manifest, error=ConfigError)
        expect = data.get("expect", {})
        click.echo(f"{manifest.parent.name:<14} {expect.get('verdict', '?'):<17} {data.get('title', '')}")
    click.echo("\nRun one with: diagnose run --example NAME")


def example_names() -> list[str]:
    return sorted(p.parent.name for p in Path(data_dir("examples")).glob("*/example.yaml"))
