"""Engine benchmark: 10,000 facts against 200 generated rules, and the seed example's start-up.

    python bench/engine.py [--facts 10000] [--rules 200] [--repeat 5]

Targets (2-core machine): diagnose 10,000 facts x 200 rules in under 1 s on either engine; the whole
process of `diagnose run --example seed` in under 0.5 s. The 10,000-fact figure is given for the
reference evaluator and for durable_rules in its worker process (the default) and in this process
(DIAGNOSE_ENGINE_WORKER=none), to show what the isolation costs; the two engines' firings are
checked to be the same.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from diagnose.diagnosis import analyze  # noqa: E402
from diagnose.engine import create_engine, worker  # noqa: E402
from diagnose.facts import EvidenceBundle, make_fact  # noqa: E402
from diagnose.rulebook.loader import load_rulebook  # noqa: E402

CAUSE = "id: c{n}\nverdict: {verdict}\ntitle: generated cause {n}\nremediation: [none]\n"
RULE = """id: g{n}
title: generated rule {n}
status: experimental
when:
{when}
conclude: {{cause: c{cause}, certainty: {cf}, explain: "generated"}}
"""


def generate_rules(root: Path, count: int, rng: random.Random) -> Path:
    base = root / "rules"
    (base / "causes").mkdir(parents=True)
    (base / "gen").mkdir()
    for n in range(40):
        (base / "causes" / f"c{n}.yaml").write_text(
            CAUSE.format(n=n, verdict=rng.choice(["benign", "misconfiguration", "fault"]))
        )
    for n in range(count):
        if n < count * 0.4:  # numeric
            when = (
                f"  log: {{kind: log.status_summary, status64_count: {{gt: {rng.randint(900, 1000)}}}, "
                f"records: {{le: {rng.randint(100, 2000)}}}}}"
            )
        elif n < count * 0.6:  # strings
            when = (
                f"  svc: {{kind: service.state, name: {{in: [S{n % 100}, S{n % 100 + 1}]}}, "
                f'state: {{ne: running}}, host: {{matches: "cas*"}}}}'
            )
        elif n < count * 0.9:  # joins
            when = (
                f"  a: {{kind: service.state, state: stopped, name: S{n % 100}}}\n"
                f'  b: {{kind: host.tcp_states, remote: "$a.host", time_wait: {{gt: {rng.randint(0, 50)}}}}}'
            )
        else:  # negation
            when = (
                f"  log: {{kind: log.status_summary, status64_count: {{gt: {rng.randint(950, 1000)}}}}}\n"
                f"  not:\n    svc: {{kind: service.state, name: S{n % 100}, state: running, "
                f'host: "$log.server"}}'
            )
        (base / "gen" / f"g{n}.yaml").write_text(
            RULE.format(n=n, when=when, cause=rng.randint(0, 39), cf=round(rng.uniform(-0.5, 0.9), 2))
        )
    return base


def generate_facts(count: int, rng: random.Random) -> list:
    facts = []
    for i in range(count):
        r = i % 3
        if r == 0:
            facts.append(
                make_fact(
                    "log.status_summary",
                    f"server:{i}",
                    "bench",
                    status64_count=rng.randint(0, 1000),
                    records=rng.randint(0, 2000),
                    server=f"cas{i % 500}",
                    status64_share=rng.random() * 1e-4,
                )
            )
        elif r == 1:
            facts.append(
                make_fact(
                    "service.state",
                    f"cas{i % 500}/S{i % 100}",
                    "bench",
                    name=f"S{i % 100}",
                    state=rng.choice(["running", "stopped", "paused"]),
                    host=f"cas{i % 500}",
                )
            )
        else:
            facts.append(
                make_fact(
                    "host.tcp_states",
                    f"remote:{i}",
                    "bench",
                    remote=f"cas{i % 500}",
                    time_wait=rng.randint(0, 60),
                    close_wait=rng.randint(0, 5),
                )
            )
    return facts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facts", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(2011)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        book = load_rulebook([generate_rules(Path(tmp), args.rules, rng)])
        load_s = time.perf_counter() - started
        facts = generate_facts(args.facts, rng)
        bundle = EvidenceBundle(facts=tuple(facts))
        print(f"rulebook: {args.rules} rules loaded in {load_s * 1000:.0f} ms")
        seen = {}
        for engine_name, mode in (("reference", "none"), ("durable", worker.mode()), ("durable", "none")):
            os.environ["DIAGNOSE_ENGINE_WORKER"] = mode
            started = time.perf_counter()
            engine = create_engine(book, engine_name)
            create_s = time.perf_counter() - started
            started = time.perf_counter()
            engine.run([])
            ready_s = time.perf_counter() - started
            times, cpu, firings = [], [], 0
            for _ in range(args.repeat):
                started, started_cpu = time.perf_counter(), time.process_time()
                diagnosis = analyze(bundle, book, engine)
                times.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
                firings = len(diagnosis.firings)
            seen[(engine_name, mode)] = sorted(f.key() for f in diagnosis.firings)
            if engine_name == "reference":
                who = "reference evaluator (in this process)"
            else:
                where = "in this process (no isolation)" if mode == "none" else f"in a {mode}ed worker process"
                who = f"durable_rules {where}"
            print(
                f"{who}: engine created in {create_s * 1000:.0f} ms, rules loaded and first "
                f"(empty) diagnosis after {ready_s * 1000:.0f} ms more"
            )
            own = "" if mode != "none" else f", CPU of this process {statistics.median(cpu):.3f} s"
            print(
                f"  diagnose {args.facts} facts x {args.rules} rules: median {statistics.median(times):.3f} s, "
                f"best {min(times):.3f} s{own} ({firings} firings, {len(diagnosis.causes)} causes)  target < 1 s"
            )
        del os.environ["DIAGNOSE_ENGINE_WORKER"]
        same = len({tuple(v) for v in seen.values()}) == 1
        print(f"both engines gave the same firings: {'yes' if same else 'NO'}")
    runs = []
    command = [sys.executable, "-m", "diagnose", "run", "--example", "seed"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for _ in range(max(5, args.repeat)):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env, cwd=REPO)
        runs.append(time.perf_counter() - started)
    print(
        f"whole process `diagnose run --example seed`: median {statistics.median(runs):.3f} s, "
        f"best {min(runs):.3f} s  target < 0.5 s"
    )


if __name__ == "__main__":
    main()
