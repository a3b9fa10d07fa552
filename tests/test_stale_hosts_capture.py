"""A stale HOSTS entry on TMG seen in a capture: TMG's SYNs go to the address the entry gives, which
refuses them. Those refusals are the name-resolution problem, not the backend being down
(rules/capture/refused-to-misresolved-address.yaml), end to end from a real tcpdump capture on
loopback and a HOSTS file, through `diagnose run`, and alike under both engines."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.probes.loopback import Tcpdump, cannot_capture, free_port
from tests.test_explanations import explanations, run_json
from tests.test_explanations_named import stale_hosts_site

TMG = "127.0.0.1"  # TMG's server-leg address
CAS = "127.0.0.11"  # the Client Access server
STALE = "127.0.0.12"  # the old CAS, where TMG's HOSTS file still sends cas01; nothing listens there
ATTEMPTS = 4

pytestmark = pytest.mark.skipif(cannot_capture() is not None, reason=str(cannot_capture()))


def _refused_capture(path: Path, port: int, to: tuple[str, ...]) -> Path:
    """tcpdump on lo while TMG's address connects to each of `to` on a closed `port` (each SYN is
    answered by RST)."""
    dump = Tcpdump(path, f"tcp port {port}")
    try:
        for address in to:
            with socket.socket() as s:
                s.bind((TMG, 0))
                with pytest.raises(ConnectionRefusedError):
                    s.connect((address, port))
    finally:
        dump.stop()
    return path


def _inputs(tmp_path: Path, to: tuple[str, ...]) -> list[str]:
    port = free_port(STALE)
    capture = _refused_capture(tmp_path / "tmg-server-leg.pcap", port, to)
    return [*stale_hosts_site(tmp_path, STALE, CAS, TMG, f"internal_port: {port}\n"), "--capture", str(capture)]


def test_refused_syns_to_the_stale_hosts_address_rule_out_the_backend_being_down(tmp_path: Path) -> None:
    d = run_json(*_inputs(tmp_path, (STALE,) * ATTEMPTS))
    summary = next(
        f["attrs"] for f in d["facts"] if f["kind"] == "capture.teardown_summary" and f["attrs"]["scope"] == "server"
    )
    assert (summary["address"], summary["refused"]) == (STALE, ATTEMPTS)
    assert (d["verdict"], d["decided_by"]) == ("misconfiguration", "name-resolution-mismatch")
    assert d["causes"][0]["id"] == "name-resolution-mismatch"
    assert "backend-unreachable" not in [c["id"] for c in d["causes"]]
    down = next(c for c in d["ruled_out"] if c["id"] == "backend-unreachable")
    assert down["certainty"] <= 0
    said = explanations(d, "backend-unreachable")
    assert "server-leg-connections-refused" in said
    assert said["refused-to-misresolved-address"].startswith(
        f"the {ATTEMPTS} refused and 0 unanswered connection attempts on the TMG-to-server leg of the capture "
        f"all go to {summary['server']}, the address cas01.contoso.local (internal name) resolves to on TMG "
        "through hosts"
    )


def test_refusals_by_the_internal_server_as_well_keep_the_backend_cause(tmp_path: Path) -> None:
    """The real CAS refuses too: the stale entry does not explain every refusal, so the backend stays."""
    d = run_json(*_inputs(tmp_path, (STALE, STALE, CAS, CAS)))
    backend = next(c for c in d["causes"] if c["id"] == "backend-unreachable")
    assert backend["certainty"] == pytest.approx(0.65)
    assert "refused-to-misresolved-address" not in [r["id"] for r in backend["rules"]]


@pytest.mark.parametrize("to", [(STALE,) * ATTEMPTS, (STALE, CAS)], ids=["stale-only", "stale-and-cas"])
def test_both_engines_fire_alike_on_the_capture_bundle(tmp_path: Path, to: tuple[str, ...]) -> None:
    from diagnose.diagnosis import diagnosis_facts
    from diagnose.engine import create_engine
    from diagnose.facts import load_bundle
    from diagnose.paths import data_dir
    from diagnose.rulebook.loader import load_rulebook

    bundle = tmp_path / "bundle.json"
    done = run_cli("collect", "--offline", "--no-input", *_inputs(tmp_path, to), "-o", str(bundle))
    assert done.returncode == 0, done.stderr
    facts = diagnosis_facts(load_bundle(bundle))
    rulebook = load_rulebook([data_dir("rules")])
    fired: list[Any] = [
        sorted(f.key() for f in create_engine(rulebook, name).run(facts).firings) for name in ("durable", "reference")
    ]
    assert fired[0] == fired[1]
    ids = {rule for rule, _ in fired[0]}
    assert "server-leg-connections-refused" in ids
    assert ("refused-to-misresolved-address" in ids) == (CAS not in to)
