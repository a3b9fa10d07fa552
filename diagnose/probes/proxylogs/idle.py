"""The idle-timeout detector: failed long-lived requests that all end after the same time.

A device between the client and Exchange (a proxy, a load balancer, a firewall) that drops a
connection idle for N seconds cuts every long poll that waits longer than N: EAS `Cmd=Ping` waiting
out its heartbeat, Outlook Anywhere RPC_IN_DATA / RPC_OUT_DATA channels between keep-alives, MAPI
NotificationWait. Their durations as logged (IIS time-taken, HAProxy Ta/Tt, nginx $request_time)
then pile up at one value. Long polls that end by design end at the heartbeat (or later), and the
ones cut by a client's own network are spread out.

The readers keep a histogram of the failed long polls' durations in whole seconds per product and
class (bounded: at most MAX_VALUES distinct values, the rest counted as "(other)"); this module turns
it into one `proxy.idle_timeout` fact per product and class: the value the failures cluster at
(one second either side counts as at it, for rounding), the share of the failures at it, and how it
compares with the heartbeat the clients use.

The heartbeat comes from the site profile (`heartbeat_seconds`) when given; for EAS Ping it is at
least Exchange's MinHeartbeatInterval (60 s by default: a Ping that waited less than that without an
answer did not end at its heartbeat); for the other classes it is unknown without the profile.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from diagnose.facts import Fact, make_fact
from diagnose.thresholds import thresholds

KIND = "proxy.idle_timeout"
# the clustering thresholds, with why each is what it is: checks/thresholds.yaml (diagnose/thresholds.py)
MIN_FAILED = thresholds().idle_min_failed  # failed long polls needed before a cluster means anything
MIN_SHARE = thresholds().idle_min_share  # share of the failed long polls at one value for a cluster
EAS_MIN_HEARTBEAT = thresholds().eas_min_heartbeat  # Exchange's default MinHeartbeatInterval, seconds


@dataclass(frozen=True)
class Cluster:
    """Where the failed long polls of one class end."""

    long_poll: str
    failed: int  # failed long polls with a logged duration
    seconds: int  # the value most of them end at (whole seconds)
    at_value: int  # how many end within one second of it
    heartbeat: int | None
    heartbeat_source: str  # profile | exchange-minimum | ""
    at_or_after_heartbeat: int  # failed long polls that lasted at least the heartbeat (less one second)

    @property
    def share(self) -> float:
        return round(self.at_value / self.failed, 2) if self.failed else 0.0

    @property
    def after_share(self) -> float:
        return round(self.at_or_after_heartbeat / self.failed, 2) if self.failed else 0.0

    @property
    def clustered(self) -> bool:
        return self.failed >= MIN_FAILED and self.share >= MIN_SHARE and self.seconds >= 1

    @property
    def below_heartbeat(self) -> bool | None:
        if self.heartbeat is None:
            return None
        return self.seconds < self.heartbeat - 1


def _heartbeat(long_poll: str, configured: int | None) -> tuple[int | None, str]:
    if configured:
        return configured, "profile"
    if long_poll == "eas_ping":
        return EAS_MIN_HEARTBEAT, "exchange-minimum"
    return None, ""


def clusters(failed_durations: Counter, heartbeat: int | None = None) -> list[Cluster]:
    """One Cluster per long-poll class in a histogram of (class, whole seconds) -> count."""
    by_class: dict[str, Counter] = {}
    for value, n in failed_durations.items():
        if isinstance(value, tuple):  # "(other)" holds durations past the histogram's bound
            by_class.setdefault(value[0], Counter())[value[1]] += n
    found = []
    for long_poll, histogram in sorted(by_class.items()):

        def around(s: int, h: Counter = histogram) -> int:
            return h[s - 1] + h[s] + h[s + 1]

        seconds = max(histogram, key=lambda s: (around(s), histogram[s], -s))
        beat, source = _heartbeat(long_poll, heartbeat)
        # only a known heartbeat says a long poll lasted it: Exchange's minimum is a floor, not the heartbeat
        after = sum(n for s, n in histogram.items() if source == "profile" and beat is not None and s >= beat - 1)
        found.append(Cluster(long_poll, sum(histogram.values()), seconds, around(seconds), beat, source, after))
    return found


def facts(product: str, failed_durations: Counter, heartbeat: int | None, source: str, check: str | None) -> list[Fact]:
    """The `proxy.idle_timeout` facts of one product (subject PRODUCT:CLASS)."""
    return [
        make_fact(
            KIND,
            f"{product}:{c.long_poll}",
            "proxylogs",
            source=source,
            check=check,
            product=product,
            long_poll=c.long_poll,
            failed=c.failed,
            seconds=c.seconds,
            at_value=c.at_value,
            share=c.share,
            clustered=c.clustered,
            heartbeat=c.heartbeat,
            heartbeat_source=c.heartbeat_source or None,
            below_heartbeat=c.below_heartbeat,
            at_or_after_heartbeat=c.at_or_after_heartbeat if c.heartbeat_source == "profile" else None,
            after_share=c.after_share if c.heartbeat_source == "profile" else None,
        )
        for c in clusters(failed_durations, heartbeat)
    ]
