"""The bench report: report.json (everything), report.md (the tables), latency.png (the chart).

The Markdown is what the README's Performance section quotes; every number
in it comes from report.json, so the two never disagree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

TARGETS = {
    "detail_rate": 1500.0,
    "detail_p99_ms": 25.0,
    "platform_ratio": 0.6,
    "search_rate": 500.0,
    "checkout_rate": 30.0,
    "checkout_p99_ms": 500.0,
    "rss_mb": 150.0,
}
"""The issue's first-round targets (2-core machine, generator included)."""


def _num(value: Any, digits: int = 0, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _get(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**missed**")


def _read_rows(name: str, section: dict[str, Any] | None) -> list[str]:
    if not section:
        return []
    rows = []
    for key, label in (("service", "product service"), ("bare", "bare FastAPI")):
        found = section.get(key) or {}
        at60 = found.get("at_60_percent") or {}
        latency = at60.get("latency_ms") or {}
        rows.append(
            f"| {name} | {label} | {_num(found.get('max_rate'))} | "
            f"{_num(at60.get('offered_rate'))} | {_num(latency.get('p50'), 1)} | "
            f"{_num(latency.get('p95'), 1)} | {_num(latency.get('p99'), 1)} | "
            f"{_num(100 * at60['error_rate'], 2, '%') if at60 else '-'} | "
            f"{_num(at60.get('server_cpu_ms_per_request'), 2)} | "
            f"{_num(at60.get('cpu_bound_rate'))} |"
        )
    rows.append(
        f"| {name} | service / bare | {_num(section.get('ratio'), 2)} | | | | | | | "
        f"{_num(section.get('cpu_ratio'), 2)} |"
    )
    return rows


def targets(data: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, wanted, measured, met) for each target of the issue."""
    detail = data.get("product_detail") or {}
    search = data.get("search") or {}
    checkout = data.get("checkout") or {}
    detail_rate = _get(detail, "service", "max_rate")
    detail_p99 = _get(detail, "service", "at_60_percent", "latency_ms", "p99")
    ratio = detail.get("ratio")
    cpu_ratio = detail.get("cpu_ratio")
    # On a shared machine the CPU cost ratio is the steadier estimate; judge by it if known.
    ratio_text = (
        f"{cpu_ratio:.2f} by CPU cost ({_num(ratio, 2)} by throughput)"
        if cpu_ratio is not None
        else _num(ratio, 2)
    )
    judged_ratio = cpu_ratio if cpu_ratio is not None else ratio
    search_rate = _get(search, "service", "max_rate")
    checkout_rate = checkout.get("confirmed_rate")
    checkout_p99 = _get(checkout, "confirmed", "latency_ms", "p99")
    audit_ok = _get(checkout, "audit", "ok")
    rss = data.get("rss_after_run_mb") or {}
    rss_max = max((v for v in rss.values() if v is not None), default=None)
    growth = _get(data, "soak", "growth") or {}
    worst_trend = max(
        (g["mb_per_min"] for g in growth.values() if g.get("mb_per_min") is not None),
        default=None,
    )

    def at_least(value: Any, wanted: float) -> bool | None:
        return None if value is None else value >= wanted

    def at_most(value: Any, wanted: float) -> bool | None:
        return None if value is None else value <= wanted

    return [
        ("product detail, one process", "≥ 1,500 req/s", _num(detail_rate, 0, " req/s"),
         at_least(detail_rate, TARGETS["detail_rate"])),
        ("product detail p99 at 60%", "< 25 ms", _num(detail_p99, 1, " ms"),
         at_most(detail_p99, TARGETS["detail_p99_ms"])),
        ("platform-layer ratio (service / bare)", "≥ 0.6", ratio_text,
         at_least(judged_ratio, TARGETS["platform_ratio"])),
        ("search, one process", "≥ 500 req/s", _num(search_rate, 0, " req/s"),
         at_least(search_rate, TARGETS["search_rate"])),
        ("checkouts reaching AWAITING_PAYMENT", "≥ 30 /s", _num(checkout_rate, 0, " /s"),
         at_least(checkout_rate, TARGETS["checkout_rate"])),
        ("checkout p99 POST → AWAITING_PAYMENT", "< 500 ms", _num(checkout_p99, 0, " ms"),
         at_most(checkout_p99, TARGETS["checkout_p99_ms"])),
        ("no lost or duplicated effect", "stock, points, coupons match",
         "-" if audit_ok is None else ("all match" if audit_ok else "mismatch"), audit_ok),
        ("resident memory per service", "< 150 MB", _num(rss_max, 0, " MB (largest)"),
         at_most(rss_max, TARGETS["rss_mb"])),
        ("no growth over the soak", "flat", _num(worst_trend, 2, " MB/min (worst)"),
         None if worst_trend is None else worst_trend < 1.0),
    ]  # fmt: skip


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown."""
    m = data.get("machine") or {}
    options = data.get("options") or {}
    lines = [
        "# MeshMart bench report",
        "",
        f"Run {data.get('started_at', '?')} → {data.get('finished_at', '?')}, "
        f"{'quick' if options.get('quick') else 'full'} run, backend "
        f"`{options.get('backend', 'local')}`.",
        f"Machine: {m.get('cores', '?')} cores ({m.get('cpu') or 'unknown CPU'}), "
        f"{m.get('memory_gb', '?')} GB, Python {m.get('python', '?')}; load average "
        f"{m.get('load_average')} before, {m.get('load_average_after')} after.",
        "",
        "Open-model constant-arrival-rate load (requests sent on schedule, latency from the",
        "scheduled send time). A rate is *sustained* with under 1% errors (an answer later",
        f"than {options.get('read_timeout_s', 1.0)} s counts as an error), ≥ 97% of it",
        "served, and no growing queue (median latency at the end of the step at most 3x",
        "the start).",
        "",
        "## Targets",
        "",
        "| target | wanted | measured | |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t} | {w} | {v} | {_verdict(ok)} |" for t, w, v, ok in targets(data)]
    lines += [
        "",
        "## Reads (one product process; the bare app on the same database)",
        "",
        "| query | served by | max sustained (req/s) | at 60% (req/s) | p50 (ms) | p95 (ms) "
        "| p99 (ms) | errors | server CPU per request (ms) | one core's worth (req/s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += _read_rows("product detail", data.get("product_detail"))
    lines += _read_rows("search", data.get("search"))
    lines += [
        "",
        "Latency columns are measured at 60% of the max sustained rate. Server CPU per",
        "request is the server process's user + system time over the requests it answered",
        "in that step; the last column is 1 s divided by it: the rate one process would",
        "serve with a core to itself (on a busy machine the steadier number). The last",
        "row's final column is the ratio by CPU cost (bare cost / service cost).",
    ]
    checkout = data.get("checkout") or {}
    confirmed = checkout.get("confirmed") or {}
    audit = checkout.get("audit") or {}
    lines += [
        "",
        "## Checkout (POST /api/v1/orders → AWAITING_PAYMENT, saga on the bus)",
        "",
        "| sustained rate | for | reached AWAITING_PAYMENT | p50 (ms) | p99 (ms) "
        "| POST answer p99 (ms) | errors | audit |",
        "|---|---|---|---|---|---|---|---|",
        f"| {_num(checkout.get('confirmed_rate'), 0, ' /s')} | "
        f"{_num(confirmed.get('duration'), 0, ' s')} | "
        f"{_num(confirmed.get('throughput'), 1, ' /s')} | "
        f"{_num(_get(confirmed, 'latency_ms', 'p50'), 0)} | "
        f"{_num(_get(confirmed, 'latency_ms', 'p99'), 0)} | "
        f"{_num(_get(confirmed, 'post_latency_ms', 'p99'), 0)} | "
        f"{_num(100 * confirmed['error_rate'], 2, '%') if confirmed else '-'} | "
        f"{_audit_text(audit)} |",
    ]
    setup_errors = checkout.get("setup_server_error_count") or 0
    if setup_errors:
        first = (checkout.get("setup_server_errors") or ["?"])[0]
        lines += [
            "",
            f"**{setup_errors} server errors (5xx) while setting up shoppers** (each retried;",
            f"none should happen), e.g. `{first}`; see report.json.",
        ]
    cpu = confirmed.get("service_cpu_ms_per_checkout") or {}
    if cpu:
        lines += [
            "",
            "CPU per checkout (ms, user + system): "
            + ", ".join(f"{name} {value:.1f}" for name, value in cpu.items())
            + f"; all services {sum(cpu.values()):.1f}.",
        ]
    rss = data.get("rss_after_run_mb") or {}
    growth = _get(data, "soak", "growth") or {}
    lines += [
        "",
        "## Memory (resident set size, MB)",
        "",
        "| service | after the run | soak start | soak end | soak trend (MB/min) |",
        "|---|---|---|---|---|",
    ]
    for name, value in rss.items():
        g = growth.get(name) or {}
        lines.append(
            f"| {name} | {_num(value, 0)} | {_num(g.get('first'), 0)} | "
            f"{_num(g.get('last'), 0)} | {_num(g.get('mb_per_min'), 2)} |"
        )
    generator = data.get("generator") or {}
    lines += [
        "",
        f"Generator ceiling (one process, against a trivial HTTP server on this machine): "
        f"{_num(generator.get('max_rate'), 0, ' req/s')}.",
        "",
        "Files: report.json (every step of every search), latency.png (latency by percentile).",
        "",
    ]
    return "\n".join(lines)


def _audit_text(audit: dict[str, Any]) -> str:
    if not audit:
        return "-"
    if audit.get("ok"):
        return f"{audit.get('placed')} orders, nothing lost or duplicated"
    return f"**{len(audit.get('problems') or [])} problems**"


def chart(data: dict[str, Any], path: Path) -> None:
    """Latency by percentile (HdrHistogram style) for every measured load, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: list[tuple[str, list[list[float]]]] = []
    for key, name in (("product_detail", "product detail"), ("search", "search")):
        for side, label in (("service", "service"), ("bare", "bare FastAPI")):
            step = _get(data, key, side, "at_60_percent")
            if step and step.get("spectrum_ms"):
                series.append(
                    (f"{name}, {label} @ {step['offered_rate']:.0f}/s", step["spectrum_ms"])
                )
    confirmed = _get(data, "checkout", "confirmed")
    checkout_series = (
        [(f"checkout → AWAITING_PAYMENT @ {confirmed['offered_rate']:.0f}/s",
          confirmed["spectrum_ms"])]
        if confirmed and confirmed.get("spectrum_ms")
        else []
    )  # fmt: skip
    samples = _get(data, "soak", "rss_samples") or []
    panels = 2 + (1 if samples else 0)
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.8))
    for axis, group, title in (
        (axes[0], series, "Reads at 60% of the max sustained rate"),
        (axes[1], checkout_series, "Checkout to AWAITING_PAYMENT"),
    ):
        for label, points in group:
            # 1 / (1 - p): 50% -> 2, 99% -> 100; the maximum is drawn at 99.99%.
            xs = [min(1e4, 1.0 / max(1e-4, 1.0 - p / 100.0)) for p, _ in points]
            axis.plot(xs, [max(0.01, v) for _, v in points], label=label)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlim(1, 1e4)
        axis.set_xticks([2, 10, 100, 1000, 10000])
        axis.set_xticklabels(["50%", "90%", "99%", "99.9%", "max"])
        axis.minorticks_off()
        axis.set_xlabel("percentile")
        axis.set_ylabel("latency from scheduled send (ms)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        if group:
            axis.legend(fontsize=8)
    if samples:
        axis = axes[2]
        names = [k for k in samples[0] if k != "t"]
        for name in names:
            axis.plot([s["t"] / 60 for s in samples], [s.get(name) for s in samples], label=name)
        axis.set_xlabel("soak time (min)")
        axis.set_ylabel("RSS (MB)")
        axis.set_title("Resident memory during the soak")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"MeshMart bench {data.get('started_at', '')}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write report.json, report.md and latency.png into ``out_dir``; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path = out_dir / "report.md"
    md_path.write_text(markdown(data))
    png_path = out_dir / "latency.png"
    chart(data, png_path)
    return [md_path, json_path, png_path]
