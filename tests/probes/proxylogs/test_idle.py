"""The idle-timeout detector: clusters of failed long polls' durations, heartbeats, bounded histograms."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from diagnose.collect import plan_check
from diagnose.errors import ConfigError, UsageError
from diagnose.probes import ProbeContext
from diagnose.probes.inputs import expand
from diagnose.probes.proxylogs import collect
from diagnose.probes.proxylogs.idle import clusters
from diagnose.probes.proxylogs.tally import MAX_VALUES, OTHER, Summary
from diagnose.profile import SiteProfile, profile_from_mapping

HEADER = (
    "#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n#Date: 2026-12-06 09:00:00\r\n"
    "#Fields: date time s-sitename s-ip cs-method cs-uri-stem cs-uri-query s-port c-ip sc-status sc-substatus "
    "sc-win32-status time-taken\r\n"
)


def _ping(i: int, status: str, sub: str, win32: str, ms: int) -> str:
    return (
        f"2026-12-06 09:{i // 60 % 60:02d}:{i % 60:02d} W3SVC1 192.0.2.10 POST "
        f"/Microsoft-Server-ActiveSync/default.eas Cmd=Ping&User=u{i}&DeviceId=D{i} 443 198.51.100.7 "
        f"{status} {sub} {win32} {ms}\r\n"
    )


def _idle(log: Path, heartbeat: int | None = None) -> dict[str, dict[str, object]]:
    ctx = ProbeContext()
    result, problems = collect(
        ctx, plan_check("proxylogs", {"paths": [str(log)]}, SiteProfile(heartbeat_seconds=heartbeat))[1]
    )
    assert not problems, problems
    return {f.subject: dict(f.attrs) for f in result.facts if f.kind == "proxy.idle_timeout"}


def test_cluster_one_second_either_side_counts() -> None:
    (found,) = clusters(
        Counter({("eas_ping", 119): 2, ("eas_ping", 120): 5, ("eas_ping", 121): 1, ("eas_ping", 700): 2}), heartbeat=480
    )
    assert (found.seconds, found.at_value, found.failed, found.share) == (120, 8, 10, 0.8)
    assert found.clustered and found.below_heartbeat is True and found.at_or_after_heartbeat == 2


def test_spread_failures_are_no_cluster() -> None:
    histogram = Counter({("eas_ping", s): 1 for s in range(10, 400, 37)})
    (found,) = clusters(histogram)
    assert not found.clustered and found.share < 0.6


def test_heartbeat_sources() -> None:
    histogram = Counter({("eas_ping", 5): 4, ("rpc_out_data", 300): 4})
    eas, rpc = clusters(histogram)
    assert (eas.heartbeat, eas.heartbeat_source, eas.below_heartbeat) == (60, "exchange-minimum", True)
    assert (rpc.heartbeat, rpc.heartbeat_source, rpc.below_heartbeat) == (None, "", None)
    eas, rpc = clusters(histogram, heartbeat=900)
    assert eas.heartbeat_source == rpc.heartbeat_source == "profile" and rpc.below_heartbeat is True


def test_iis_pings_cut_at_one_value(tmp_path: Path) -> None:
    log = tmp_path / "u_ex261206.log"
    rows = [_ping(i, "502", "3", "12002", 120_000 + i * 13) for i in range(9)]  # ARR's 120 s proxy time-out
    rows += [_ping(20, "200", "0", "0", 480_002), _ping(21, "200", "0", "64", 33_000)]
    log.write_bytes((HEADER + "".join(rows)).encode())
    got = _idle(log, heartbeat=480)["iis:eas_ping"]
    assert got["failed"] == 10 and got["seconds"] == 120 and got["at_value"] == 9 and got["share"] == 0.9
    assert got["clustered"] is True and got["below_heartbeat"] is True and got["heartbeat"] == 480


def test_pings_that_ran_out_their_heartbeat(tmp_path: Path) -> None:
    log = tmp_path / "u_ex261206.log"
    rows = [_ping(i, "200", "0", "64", 480_000 + i * 300) for i in range(6)]
    log.write_bytes((HEADER + "".join(rows)).encode())
    got = _idle(log, heartbeat=480)["iis:eas_ping"]
    assert got["below_heartbeat"] is False and got["at_or_after_heartbeat"] == 6 and got["after_share"] == 1.0


def test_histogram_is_bounded(tmp_path: Path) -> None:
    """Thousands of distinct durations keep at most MAX_VALUES histogram entries; the rest are "(other)"."""
    from diagnose.probes.proxylogs import _read

    log = tmp_path / "u_ex261206.log"
    count = MAX_VALUES * 3
    log.write_bytes((HEADER + "".join(_ping(i, "200", "0", "64", i * 1000) for i in range(count))).encode())
    summary = Summary()
    (entry,), _ = expand([str(log)])
    _read(entry, summary)
    durations = summary.figures[("iis", "all")].failed_durations
    assert len(durations) == MAX_VALUES + 1 and sum(durations.values()) == count and durations[OTHER] > 0


def test_profile_proxy_fields() -> None:
    profile = profile_from_mapping(
        {"proxy_product": "haproxy", "proxy_addresses": ["192.0.2.10"], "heartbeat_seconds": "480"}, "test"
    )
    assert profile.product == "haproxy" and profile.tmg_addresses == ("192.0.2.10",) == profile.proxy_addresses
    assert profile.heartbeat_seconds == 480 and SiteProfile().product == "tmg"
    assert profile.to_fact().attrs["proxy_product"] == "haproxy"
    assert "proxy_product" not in SiteProfile().to_fact().attrs  # TMG profiles give the same fact as before
    with pytest.raises(ConfigError, match="proxy_product must be one of"):
        profile_from_mapping({"proxy_product": "f5"}, "test")
    with pytest.raises(ConfigError, match="same field"):
        profile_from_mapping({"tmg_addresses": ["192.0.2.1"], "proxy_addresses": ["192.0.2.2"]}, "test")
    with pytest.raises(ConfigError, match="heartbeat_seconds"):
        profile_from_mapping({"heartbeat_seconds": 0}, "test")
    with pytest.raises(ConfigError, match="proxy_addresses: 'x' is not an IP address"):
        profile_from_mapping({"proxy_addresses": ["x"]}, "test")


def test_bad_heartbeat_in_the_spec_is_one_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "u_ex261206.log"
    log.write_bytes((HEADER + _ping(1, "200", "0", "0", 10)).encode())
    with pytest.raises(UsageError, match="'heartbeat_seconds' must be a whole number"):
        collect(ProbeContext(), {"paths": [str(log)], "heartbeat_seconds": "soon"})


def test_byte_ranges_give_the_same_clusters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big plain log read in byte ranges by worker processes gives the idle facts of one reading."""
    from diagnose.probes.proxylogs import build_facts, parts, summarise

    monkeypatch.setattr(parts, "SPLIT_AT", 16 << 10)
    log = tmp_path / "u_ex261206.log"
    rows = [
        _ping(i, "502", "3", "12002", 120_000 + i % 900) if i % 3 else _ping(i, "200", "0", "0", 500 + i)
        for i in range(3000)
    ]
    log.write_bytes((HEADER + "".join(rows)).encode())
    assert len(parts.plan(expand([str(log)])[0][0], 2)) > 3

    def idle_facts(jobs: int) -> list[dict[str, object]]:
        summary, _ = summarise([str(log)], jobs)
        return [dict(f.attrs) for f in build_facts(summary, None, 480)[0] if f.kind == "proxy.idle_timeout"]

    (one,) = idle_facts(1)
    assert idle_facts(2) == [one]
    assert one["failed"] == 2000 and one["seconds"] == 120 and one["clustered"] is True
