"""The generator process: one constant-rate step described by a JSON spec on stdin.

``python -m meshmart_devstack.bench generate < spec.json`` prints one JSON
object on stdout. The bench runner starts one such process per step, so the
generator has a core (and an event loop) of its own and the runner's
bookkeeping never delays a scheduled request.

Spec kinds:

- ``{"kind": "get", "base_url", "paths": [...], "rate", "duration", "timeout",
  "max_connections"}`` -> ``{"step": StepResult.summary()}``;
- ``{"kind": "checkout", ...}`` (see :mod:`.checkout`) -> the raw records
  (``offsets``, ``latencies``, ``outcomes``, ``kept``, ``wall_start``), which
  the runner completes with the times orders reached AWAITING_PAYMENT.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
from contextlib import suppress
from typing import IO, Any

from meshmart_devstack.bench.arrivals import measure_get, run_loop, run_step, warm_connections
from meshmart_devstack.bench.checkout import CheckoutSpec, checkout_job
from meshmart_devstack.bench.http11 import ConnectionPool


async def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the step ``spec`` describes; the JSON-ready outcome."""
    kind = spec["kind"]
    if kind == "get":
        step = await measure_get(
            spec["base_url"],
            list(spec["paths"]),
            rate=float(spec["rate"]),
            duration=float(spec["duration"]),
            answer_within=float(spec.get("timeout", 1.0)),
            max_connections=int(spec.get("max_connections", 256)),
        )
        return {"step": step.summary()}
    if kind == "checkout":
        checkout = CheckoutSpec.from_json(spec)
        pool = ConnectionPool(checkout.order_url, max_connections=checkout.max_connections)
        try:
            with suppress(OSError):  # the requests will report it
                await pool.warm(warm_connections(checkout.rate))
            records = await run_step(
                checkout_job(pool, checkout),
                rate=checkout.rate,
                duration=checkout.duration,
                answer_within=checkout.timeout,
            )
        finally:
            pool.close()
        return {
            "wall_start": records.wall_start,
            "offsets": records.offsets,
            "latencies": records.latencies,
            "outcomes": records.outcomes,
            "kept": records.kept,
            "connections": pool.opened,
        }
    raise ValueError(f"unknown spec kind {kind!r}")


def main(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Read a spec from stdin, run it, print the outcome as JSON."""
    spec = json.load(stdin or sys.stdin)
    # Everything set up so far lives for the whole step: keep the collector off it.
    gc.freeze()
    before = resource.getrusage(resource.RUSAGE_SELF)
    outcome = run_loop(run_spec(spec))
    after = resource.getrusage(resource.RUSAGE_SELF)
    # The generator's own CPU time: at ~1 core per process it, not the server, is the limit.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    outcome["generator_cpu_s"] = round(cpu, 3)
    if "step" in outcome:
        outcome["step"]["generator_cpu_s"] = round(cpu, 3)
    json.dump(outcome, stdout or sys.stdout)
    return 0
