"""ARM's and Microsoft.Compute's request throttling, as the token buckets Azure documents.

ARM (since 2024, per region): per subscription, per principal and per operation type, reads
refill 25 tokens a second into a bucket of 250, writes and deletes 10 a second into 200; a
global subscription bucket 15 times as large is shared by every principal. Every answer tells
what is left (`x-ms-ratelimit-remaining-subscription-{reads,writes,deletes}` and the `-global-`
ones); an empty bucket answers 429 with `Retry-After`.

Compute (per subscription and region): VM requests fall into policies with their own buckets,
refilled each minute (Put VM: 500 a minute into 1,500). `x-ms-ratelimit-remaining-resource`
reports `Microsoft.Compute/<policy>;<remaining>`. Compute's per-VM buckets are left out on
purpose: the lab polls operations every second where Azure asks for 10 or more, and would
throttle itself.

Settings scale both families (size and refill alike): `{"arm": 1.0, "compute": 1.0}`; null turns
one off (its buckets still count, for the headers, but never refuse).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

ARM_BUCKETS = {"reads": (250, 25.0), "writes": (200, 10.0), "deletes": (200, 10.0)}  # size, per second
GLOBAL_FACTOR = 15
COMPUTE_POLICIES = {  # size, refill per minute (subscription level)
    "PutVM": (1500, 500), "UpdateVM": (1500, 500), "DeleteVM": (1500, 500),
    "LowCostGetVM": (24000, 8000), "HighCostGetVM": (900, 300), "GetOperation": (15000, 5000),
}
DEFAULT_SCALES = {"arm": 1.0, "compute": 1.0}


def arm_kind(method: str) -> str:
    return {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(method, "writes")


@dataclass
class Bucket:
    size: int
    per_second: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.size, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now

    def wait(self) -> int | None:
        """Whole seconds until a token is back (None: one is there)."""
        return None if self.tokens >= 1 else max(1, math.ceil((1 - self.tokens) / self.per_second))


@dataclass
class Verdict:
    headers: dict[str, str]
    wait: int | None = None  # seconds, when refused
    refused_by: str | None = None  # "arm" or "compute"
    policy: str = ""  # what ran dry: "writes", "global-writes", "PutVM", ...


class Throttle:
    def __init__(self, scales: dict | None = None):
        self.lock = threading.Lock()
        self.reset(scales)

    def reset(self, scales: dict | None = None) -> None:
        """Full buckets, sized by the given scale factors (None: unchanged)."""
        with self.lock:
            if scales is not None or not hasattr(self, "scales"):
                self.scales = {**DEFAULT_SCALES, **(scales or {})}
            self.buckets: dict[tuple, Bucket] = {}

    def size(self, family: str, policy: str) -> int:
        """A bucket's size as scaled now ("arm" with reads/writes/deletes, "compute" with a policy)."""
        size = (ARM_BUCKETS if family == "arm" else COMPUTE_POLICIES)[policy][0]
        scale = self.scales.get(family)
        return max(1, round(size * (scale if scale is not None else 1.0)))

    def _bucket(self, key: tuple, size: int, per_second: float, scale: float | None, now: float) -> Bucket:
        bucket = self.buckets.get(key)
        if bucket is None:
            factor = scale if scale is not None else 1.0
            scaled = max(1, round(size * factor))
            bucket = self.buckets[key] = Bucket(scaled, per_second * factor, scaled, now)
        return bucket

    def charge(self, principal: str, method: str, compute_policy: str | None) -> Verdict:
        """Count one ARM request (and its Compute policy, if any); say whether it may proceed.
        A refused request takes no token."""
        kind = arm_kind(method)
        now = time.monotonic()
        with self.lock:
            size, rate = ARM_BUCKETS[kind]
            arm_scale, compute_scale = self.scales.get("arm"), self.scales.get("compute")
            checks = [(kind, "x-ms-ratelimit-remaining-subscription-" + kind, arm_scale,
                       self._bucket(("arm", kind, principal), size, rate, arm_scale, now)),
                      (f"global-{kind}", f"x-ms-ratelimit-remaining-subscription-global-{kind}", arm_scale,
                       self._bucket(("arm", kind), size * GLOBAL_FACTOR, rate * GLOBAL_FACTOR, arm_scale, now))]
            if compute_policy:
                size, per_minute = COMPUTE_POLICIES[compute_policy]
                checks.append((compute_policy, "x-ms-ratelimit-remaining-resource", compute_scale,
                               self._bucket(("compute", compute_policy), size, per_minute / 60, compute_scale, now)))
            verdict = Verdict({})
            for name, _header, scale, bucket in checks:
                bucket.refill(now)
                wait = bucket.wait()
                if wait is not None and scale is not None and verdict.wait is None:
                    verdict.wait, verdict.policy = wait, name
                    verdict.refused_by = "compute" if name == compute_policy else "arm"
            for name, header, _scale, bucket in checks:
                if verdict.wait is None and bucket.tokens >= 1:
                    bucket.tokens -= 1
                left = str(int(bucket.tokens))
                verdict.headers[header] = f"Microsoft.Compute/{name};{left}" if name == compute_policy else left
            if verdict.refused_by == "arm":  # ARM refused it: Compute never saw it
                verdict.headers.pop("x-ms-ratelimit-remaining-resource", None)
            return verdict
