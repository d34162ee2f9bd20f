"""`make bench`: start a fresh stack, measure it with the open-model generator, write a report.

Phases, each in its own processes (the generator never shares a process
with the runner or a server):

1. the generator's own ceiling, against :mod:`.trivial_server`;
2. product detail and search: the highest rate one product process sustains
   (grow the rate until a step fails, then bisect), the same for the bare
   FastAPI app of :mod:`.bare_app` on the same database, then latency at 60%
   of each maximum;
3. checkout: the highest rate of checkouts that reach AWAITING_PAYMENT,
   confirmed over a longer run, and the audit of stock, points and coupons;
4. resident memory of each service; with ``soak`` a five-minute mixed load
   sampling it every ten seconds.

Everything lives under ``out_dir`` (default ``var/bench``): the stack's data
(``stack/``, recreated each run), process logs, and the report files.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import httpx

from meshmart_common.testing import free_port
from meshmart_devstack.bench.api import BenchApi
from meshmart_devstack.bench.arrivals import StepRecords
from meshmart_devstack.bench.checkout import CheckoutSpec, Shopper, audit, awaiting_latencies
from meshmart_devstack.bench.report import write_report
from meshmart_devstack.bench.stats import Trial, highest_sustained, next_rate
from meshmart_devstack.launcher import SERVICES, Stack, StackConfig

T = TypeVar("T")
Backend = Literal["local", "rocketmq"]

STACK_ENV = {
    # Password hashing is not what is measured: one pass instead of three sets up the
    # shoppers faster. The memory cost stays at its default: below glibc's 32 MiB mmap
    # ceiling, freed hash buffers would stay in the user service's heap and inflate its RSS.
    "ARGON2_TIME_COST": "1",
    # Tokens and unpaid orders must outlive the longest run (soak included).
    "ACCESS_TOKEN_TTL_SECONDS": "7200",
    "PAYMENT_TIMEOUT_SECONDS": "7200",
    # Every shopper logs in from 127.0.0.1; the per-IP login limit would refuse most.
    "RATE_LIMIT_LOGIN_PER_MINUTE": "0",
}
BENCH_PRODUCTS = 10
SEARCH_QUERIES = (
    "q=lamp",
    "category={category}&sort=price",
    "min_price=1000&max_price=5000&sort=-rating",
    "q=a&page=2&page_size=10",
)
MAX_SEARCH_STEPS = 14
IDLE_CPU_SHARE = 0.15
"""A server using less than this share of a core is done with the last step's backlog."""


class BenchError(RuntimeError):
    """The bench could not run a phase; the message says which and why."""


@dataclass
class BenchOptions:
    """How long and how hard to measure."""

    out_dir: Path
    quick: bool = False
    soak: bool = False
    backend: Backend = "local"
    step_seconds: float = 8.0
    measure_seconds: float = 30.0
    checkout_step_seconds: float = 15.0
    checkout_confirm_seconds: float = 60.0
    soak_seconds: float = 300.0
    shoppers: int = 400
    read_timeout: float = 1.0
    checkout_timeout: float = 5.0
    growth: float = 1.6
    precision: float = 0.05
    read_start_rate: float = 200.0
    checkout_start_rate: float = 10.0
    generator_start_rate: float = 2000.0

    @classmethod
    def for_run(
        cls, out_dir: Path, *, quick: bool = False, soak: bool = False, backend: Backend = "local"
    ) -> BenchOptions:
        """The full run, or the quick one (shorter steps, coarser search)."""
        options = cls(out_dir=out_dir, quick=quick, soak=soak, backend=backend)
        if quick:
            options = replace(
                options,
                step_seconds=4.0,
                measure_seconds=10.0,
                checkout_step_seconds=8.0,
                checkout_confirm_seconds=20.0,
                shoppers=200,
                growth=1.8,
                precision=0.12,
            )
        return options


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time ``pid`` has used so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(*pids: int, within: float = 60.0, window: float = 0.5) -> bool:
    """Wait until every ``pids`` works through what the last step left queued; False on timeout.

    Closing the generator's connections does not stop requests a server has
    already read: an overloaded step leaves a backlog that would otherwise be
    charged to the next step.
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        before = [cpu_seconds(pid) for pid in pids]
        time.sleep(window)
        after = [cpu_seconds(pid) for pid in pids]
        if all(
            b is None or a is None or (a - b) / window < IDLE_CPU_SHARE
            for b, a in zip(before, after, strict=True)
        ):
            return True
    return False


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = ""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = 0.0
    with suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        memory_gb = round(int(first.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


@dataclass(frozen=True)
class BenchStackConfig(StackConfig):
    """A StackConfig that can give each service a database URL of its own (MariaDB)."""

    database_urls: dict[str, str] = field(default_factory=dict)

    def env_for(self, service: str) -> dict[str, str]:
        """The launcher's environment, plus this service's DATABASE_URL when set."""
        env = super().env_for(service)
        if service in self.database_urls:
            env["DATABASE_URL"] = self.database_urls[service]
        return env


class Bench:
    """One `make bench` run."""

    def __init__(self, options: BenchOptions, out: IO[str] | None = None) -> None:
        self.options = options
        self.out = out or sys.stdout
        self.dir = options.out_dir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.process_urls: dict[str, str] = {}
        self.idle_cpu: dict[int, float] = {}
        self.stack: Stack | None = None
        self.urls: dict[str, str] = {}
        self.report: dict[str, Any] = {}
        self.shoppers: list[Shopper] = []
        self.product_ids: list[int] = []
        self.placed: list[dict[str, Any]] = []
        self.checkout_index = 0
        self.setup_server_errors: list[str] = []
        self._cleanups: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ plumbing

    def say(self, text: str) -> None:
        """Progress for the person waiting."""
        self.out.write(f"[bench {time.strftime('%H:%M:%S')}] {text}\n")
        self.out.flush()

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> str:
        """Start ``python -m meshmart_devstack.bench ARGS`` on a free port; its base URL."""
        port = free_port()
        log = (self.dir / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "meshmart_devstack.bench", *args, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.process_urls[name] = f"http://127.0.0.1:{port}"
        return self.process_urls[name]

    def wait_http(self, name: str, url: str, within: float = 60.0) -> None:
        """Wait until ``url`` answers 200 (``name`` must stay alive meanwhile)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise BenchError(f"{name} exited: see {self.dir / (name + '.log')}")
            with suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"{name} did not answer {url} within {within:.0f} s")

    def generate(self, spec: dict[str, Any], duration: float) -> dict[str, Any]:
        """Run one step in a fresh generator process; its JSON outcome."""
        done = subprocess.run(
            [sys.executable, "-m", "meshmart_devstack.bench", "generate"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=duration + 180,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"the generator failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def run_async(self, factory: Callable[[BenchApi], Any]) -> Any:
        """Run ``factory(api)`` (a coroutine) with a fresh API client."""

        async def main() -> Any:
            api = BenchApi(self.urls)
            try:
                await api.login_admin()
                return await factory(api)
            finally:
                api.close()

        return asyncio.run(main())

    def rss(self) -> dict[str, float | None]:
        """Resident memory of each service process, MB."""
        assert self.stack is not None
        return {name: rss_mb(process.pid) for name, process in self.stack.processes.items()}

    # ------------------------------------------------------------------ stack

    def start_backends(self) -> tuple[dict[str, str], dict[str, str]]:
        """For the rocketmq backend: MariaDB and RocketMQ; (extra env, database URLs)."""
        if self.options.backend == "local":
            return {}, {}
        from meshmart_common.testing import MariaDBServer, new_mysql_database
        from meshmart_devstack.rocketmq import Ports, RocketMQServer, default_cache_dir

        # Fresh engines each run, like the SQLite files: nothing left from the last one.
        for leftover in ("rocketmq", "mariadb"):
            shutil.rmtree(self.dir / leftover, ignore_errors=True)
        self.say("starting RocketMQ 5 (name server + proxy)")
        rocketmq = RocketMQServer(
            base_dir=self.dir / "rocketmq",
            ports=Ports.free(),
            cache_dir=default_cache_dir(),
            parent_death_signal=True,
        )
        rocketmq.start()
        self._cleanups.append(lambda: rocketmq.stop(timeout=5))
        self.say("starting MariaDB")
        mariadb = MariaDBServer(self.dir / "mariadb")
        try:
            mariadb.start()
        except BaseException as exc:  # pytest.fail raises an OutcomeException
            raise BenchError(f"MariaDB did not start: {exc}") from None
        self._cleanups.append(mariadb.stop)
        urls = {name: new_mysql_database(mariadb, prefix=name) for name in SERVICES}
        env = {"BUS_BACKEND": "rocketmq", "ROCKETMQ_ENDPOINTS": rocketmq.endpoints}
        return env, urls

    def start_stack(self) -> None:
        """Migrate, seed and start the five services on free ports, in a fresh data folder."""
        var_dir = self.dir / "stack"
        shutil.rmtree(var_dir, ignore_errors=True)
        var_dir.mkdir(parents=True)
        env, database_urls = self.start_backends()
        config = BenchStackConfig(
            host="127.0.0.1",
            ports={name: free_port() for name in SERVICES},
            var_dir=var_dir.resolve(),
            extra_env={**STACK_ENV, **env},
            database_urls=database_urls,
        )
        log = (self.dir / "stack.log").open("w")
        self._cleanups.append(log.close)
        self.stack = Stack(config, log)
        self.say(f"migrating and seeding a fresh stack in {var_dir}")
        try:
            self.stack.migrate()
            self.stack.seed()
            self.stack.start()
            self.stack.wait_ready()
        except RuntimeError as exc:
            raise BenchError(
                f"the stack did not start ({exc}); see {self.dir / 'stack.log'}"
            ) from exc
        self.urls = {name: config.url(name) for name in SERVICES}
        self.product_database_url = database_urls.get(
            "product", f"sqlite+aiosqlite:///{var_dir.resolve() / 'product.db'}"
        )
        self.say("stack ready: " + ", ".join(f"{n} {u}" for n, u in self.urls.items()))

    def stop(self) -> None:
        """Stop every process this run started."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.stack is not None:
            self.stack.stop()
        for cleanup in reversed(self._cleanups):
            with suppress(Exception):
                cleanup()

    # ------------------------------------------------------------------ reads

    def server_pid(self, base_url: str) -> int | None:
        """The pid of the process serving ``base_url`` (product, bare app, trivial server)."""
        if self.stack is not None and base_url == self.urls.get("product"):
            return self.stack.processes["product"].pid
        for name, process in self.processes.items():
            if self.process_urls.get(name) == base_url:
                return process.pid
        return None

    def get_step(
        self, base_url: str, paths: list[str], rate: float, duration: float
    ) -> dict[str, Any]:
        """One constant-rate step of GETs; the step summary, with the server's CPU per request.

        CPU time per request is the steadiest number on a busy machine: other
        processes stretch latency and cut throughput, but barely change how
        much CPU one request costs. ``cpu_bound_rate`` is what one process
        would serve with a core of its own.
        """
        pid = self.server_pid(base_url)
        if pid:
            wait_idle(pid)
        idle_share = self.idle_cpu.get(pid, 0.0) if pid else 0.0
        cpu_before = cpu_seconds(pid) if pid else None
        outcome = self.generate(
            {
                "kind": "get",
                "base_url": base_url,
                "paths": paths,
                "rate": rate,
                "duration": duration,
                "timeout": self.options.read_timeout,
            },
            duration,
        )
        step: dict[str, Any] = outcome["step"]
        cpu_after = cpu_seconds(pid) if pid else None
        if cpu_before is not None and cpu_after is not None and step["ok"]:
            # Less what the process burns when idle (bus polling, outbox relay), which
            # would otherwise weigh on the low-rate steps.
            busy = (cpu_after - cpu_before) - idle_share * (step["duration"] + 0.5)
            per_request = max(0.0, busy) / step["ok"]
            step["server_cpu_ms_per_request"] = round(per_request * 1000, 3)
            step["cpu_bound_rate"] = round(1 / per_request) if per_request > 0 else None
        return step

    def find_max(self, label: str, base_url: str, paths: list[str], start: float) -> dict[str, Any]:
        """Search the highest sustained rate of ``paths`` at ``base_url``."""
        trials: list[Trial] = []
        steps: list[dict[str, Any]] = []
        while len(steps) < MAX_SEARCH_STEPS:
            rate = next_rate(
                trials,
                start=start,
                growth=self.options.growth,
                precision=self.options.precision,
            )
            if rate is None:
                break
            rate = float(round(rate))
            step = self.get_step(base_url, paths, rate, self.options.step_seconds)
            trials.append((rate, bool(step["sustained"])))
            steps.append(step)
            self.say(
                f"  {label}: {rate:.0f}/s -> {step['throughput']:.0f}/s ok, "
                f"errors {step['error_rate']:.2%}, p99 {step['latency_ms']['p99']:.1f} ms, "
                f"queue growth x{step['late_median_ratio']:.1f}: "
                f"{'sustained' if step['sustained'] else 'NOT sustained'}"
            )
        best = highest_sustained(trials)
        return {"max_rate": best, "steps": steps}

    def measure_reads(self, name: str, paths: list[str], bare_url: str) -> dict[str, Any]:
        """Max rate and latency at 60% for the service and the bare app."""
        service_url = self.urls["product"]
        warm = min(2.0, self.options.step_seconds)
        for url in (service_url, bare_url):
            self.get_step(url, paths, 100.0, warm)
        self.say(f"{name}: searching the highest sustained rate (product service)")
        service = self.find_max(
            f"{name} (service)", service_url, paths, self.options.read_start_rate
        )
        self.say(f"{name}: searching the highest sustained rate (bare FastAPI)")
        bare = self.find_max(
            f"{name} (bare)",
            bare_url,
            paths,
            service["max_rate"] or self.options.read_start_rate,
        )
        result: dict[str, Any] = {"paths": paths, "service": service, "bare": bare}
        for key, found in (("service", service), ("bare", bare)):
            if found["max_rate"]:
                rate = float(round(0.6 * found["max_rate"]))
                url = service_url if key == "service" else bare_url
                step = self.get_step(url, paths, rate, self.options.measure_seconds)
                found["at_60_percent"] = step
                self.say(
                    f"  {name} ({key}) at {rate:.0f}/s: p50 {step['latency_ms']['p50']:.1f}, "
                    f"p95 {step['latency_ms']['p95']:.1f}, p99 {step['latency_ms']['p99']:.1f} ms, "
                    f"errors {step['error_rate']:.2%}, "
                    f"server CPU {step.get('server_cpu_ms_per_request', '?')} ms/request"
                )
        if service["max_rate"] and bare["max_rate"]:
            result["ratio"] = round(service["max_rate"] / bare["max_rate"], 3)
        service_cpu = (service.get("at_60_percent") or {}).get("server_cpu_ms_per_request")
        bare_cpu = (bare.get("at_60_percent") or {}).get("server_cpu_ms_per_request")
        if service_cpu and bare_cpu:
            # Throughput ratio as the CPU cost predicts it: bare cost / service cost.
            result["cpu_ratio"] = round(bare_cpu / service_cpu, 3)
        return result

    def measure_idle_cpu(self, seconds: float = 5.0) -> dict[str, float]:
        """Share of a core each service and the bare app use with no requests at all."""
        assert self.stack is not None
        pids = {name: process.pid for name, process in self.stack.processes.items()}
        if "bare-app" in self.processes:
            pids["bare-app"] = self.processes["bare-app"].pid
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        time.sleep(seconds)
        shares: dict[str, float] = {}
        for name, pid in pids.items():
            after, start = cpu_seconds(pid), before[name]
            if after is not None and start is not None:
                shares[name] = round((after - start) / seconds, 4)
                self.idle_cpu[pid] = shares[name]
        self.say(f"idle CPU (share of one core): {shares}")
        return shares

    def generator_ceiling(self) -> dict[str, Any]:
        """The generator's own highest rate, against the trivial server."""
        url = self.spawn("trivial-server", "trivial-server")
        self.wait_http("trivial-server", url + "/")
        self.say("the generator's own ceiling (against a trivial HTTP server)")
        found = self.find_max("generator", url, ["/"], self.options.generator_start_rate)
        process = self.processes.pop("trivial-server")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        return found

    # ------------------------------------------------------------------ checkout

    def setup_checkout(self) -> None:
        """Bench products and shoppers (registered, points granted, coupons claimed)."""
        self.say(f"setting up {self.options.shoppers} shoppers and {BENCH_PRODUCTS} products")

        async def setup(api: BenchApi) -> tuple[list[int], list[Shopper], list[str]]:
            products = await api.create_products(BENCH_PRODUCTS)
            shoppers = await api.new_shoppers(self.options.shoppers)
            return products, shoppers, api.server_errors

        self.product_ids, self.shoppers, errors = self.run_async(setup)
        self.setup_server_errors = errors
        if errors:
            self.say(f"  {len(errors)} server errors during setup (retried), e.g. {errors[0]}")

    def checkout_step(
        self, rate: float, duration: float, *, settle_first: bool = True
    ) -> dict[str, Any]:
        """One constant-rate checkout step, settled and timed to AWAITING_PAYMENT.

        ``settle_first``: wait until every service is idle before the step starts.
        """
        spec = CheckoutSpec(
            order_url=self.urls["order"],
            shoppers=self.shoppers,
            product_ids=self.product_ids,
            rate=rate,
            duration=duration,
            timeout=self.options.checkout_timeout,
            first_index=self.checkout_index,
        )
        assert self.stack is not None
        pids = {name: process.pid for name, process in self.stack.processes.items()}
        if settle_first:
            wait_idle(*pids.values())
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        raw = self.generate(spec.to_json(), duration)
        cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        kept: list[dict[str, Any] | None] = raw["kept"]
        self.checkout_index += len(kept)
        placed = [k for k in kept if k is not None]
        self.placed += placed
        by_user = {s.user_id: s for s in self.shoppers}
        for record in placed:
            # The generator used up these coupons; the next step must not offer them.
            code = record.get("coupon_code")
            shopper = by_user[record["user_id"]]
            if code and code in shopper.coupons:
                shopper.coupons.remove(code)
        newer_than = min((p["order_id"] for p in placed), default=1) - 1

        async def settle(api: BenchApi) -> tuple[int, dict[int, dict[str, Any]]]:
            pending = await api.wait_settled(within=60.0)
            return pending, await api.orders(newer_than=newer_than)

        pending, orders = self.run_async(settle)
        latencies, outcomes = awaiting_latencies(raw["wall_start"], raw["offsets"], kept, orders)
        for index, outcome in enumerate(raw["outcomes"]):
            if outcome != "ok":
                outcomes[index] = outcome
        records = StepRecords(
            rate=rate,
            duration=duration,
            wall_start=raw["wall_start"],
            offsets=raw["offsets"],
            latencies=latencies,
            outcomes=outcomes,
        )
        step = records.result(
            timeout=self.options.checkout_timeout, slack=0.05, connections=raw["connections"]
        ).summary()
        post = sorted(
            lat
            for lat, out in zip(raw["latencies"], raw["outcomes"], strict=True)
            if out == "ok" and lat is not None
        )
        step["post_latency_ms"] = {
            "p50": round(post[len(post) // 2] * 1000, 1) if post else None,
            "p99": round(post[min(len(post) - 1, int(len(post) * 0.99))] * 1000, 1)
            if post
            else None,
        }
        step["pending_after_settle"] = pending
        if step["ok"]:
            # The saga's work is done by now (settled), so it is all in these numbers.
            step["service_cpu_ms_per_checkout"] = {
                name: round(1000 * (after - before) / step["ok"], 2)
                for name, after in cpu_after.items()
                if after is not None and (before := cpu_before[name]) is not None
            }
        return step

    def measure_checkout(self) -> dict[str, Any]:
        """Search the checkout rate, confirm it over a longer run, audit the effects."""
        self.setup_checkout()
        self.checkout_step(2.0, 2.0)  # warm-up: first saga round trips, JWKS caches
        self.say("checkout: searching the highest sustained rate to AWAITING_PAYMENT")
        trials: list[Trial] = []
        steps: list[dict[str, Any]] = []
        while len(steps) < MAX_SEARCH_STEPS:
            rate = next_rate(
                trials,
                start=self.options.checkout_start_rate,
                growth=self.options.growth,
                precision=max(0.1, self.options.precision),
            )
            if rate is None:
                break
            rate = float(round(rate))
            step = self.checkout_step(rate, self.options.checkout_step_seconds)
            trials.append((rate, bool(step["sustained"])))
            steps.append(step)
            self.say(
                f"  checkout {rate:.0f}/s -> {step['throughput']:.1f}/s reached AWAITING_PAYMENT, "
                f"errors {step['error_rate']:.2%} {step['errors']}, "
                f"p99 {step['latency_ms']['p99']:.0f} ms: "
                f"{'sustained' if step['sustained'] else 'NOT sustained'}"
            )
        best = highest_sustained(trials)
        confirmed: dict[str, Any] | None = None
        rate = best
        for _ in range(3):
            if not rate:
                break
            seconds = self.options.checkout_confirm_seconds
            self.say(f"checkout: confirming {rate:.0f}/s for {seconds:.0f} s")
            confirmed = self.checkout_step(rate, self.options.checkout_confirm_seconds)
            self.say(
                f"  {confirmed['throughput']:.1f}/s reached AWAITING_PAYMENT, errors "
                f"{confirmed['error_rate']:.2%}, p50 {confirmed['latency_ms']['p50']:.0f} ms, "
                f"p99 {confirmed['latency_ms']['p99']:.0f} ms"
            )
            if confirmed["sustained"]:
                break
            rate = float(round(rate * 0.8))
        checked = self.audit_checkouts()
        return {
            "setup_server_errors": self.setup_server_errors[:20],
            "setup_server_error_count": len(self.setup_server_errors),
            "search": {"max_rate": best, "steps": steps},
            "confirmed": confirmed,
            "confirmed_rate": rate if confirmed and confirmed["sustained"] else None,
            "audit": checked,
        }

    def audit_checkouts(self) -> dict[str, Any]:
        """Stock, points and coupons against every order the bench placed."""
        self.say("checkout: auditing stock, points and coupons")

        async def collect(api: BenchApi) -> Any:
            await api.wait_settled(within=60.0)
            orders = await api.orders()
            stock = await api.stock(self.product_ids)
            points, coupons = await api.points_and_coupons(self.shoppers)
            return orders, stock, points, coupons

        orders, stock, points, coupons = self.run_async(collect)
        result = audit(self.placed, orders, stock, points, coupons).to_json()
        verdict = (
            "nothing lost or duplicated" if result["ok"] else f"PROBLEMS {result['problems'][:5]}"
        )
        self.say(f"  {result['placed']} orders placed, statuses {result['statuses']}: {verdict}")
        return result

    # ------------------------------------------------------------------ soak

    def soak(self, read_paths: list[str], read_rate: float, checkout_rate: float) -> dict[str, Any]:
        """Mixed load for ``soak_seconds``, sampling every service's RSS every 10 s."""
        seconds = self.options.soak_seconds
        self.say(
            f"soak: {seconds:.0f} s of {read_rate:.0f} reads/s and {checkout_rate:.0f} checkouts/s"
        )
        spec_path = self.dir / "soak-reads.json"
        spec_path.write_text(
            json.dumps(
                {
                    "kind": "get",
                    "base_url": self.urls["product"],
                    "paths": read_paths,
                    "rate": read_rate,
                    "duration": seconds,
                    "timeout": self.options.read_timeout,
                }
            )
        )
        with spec_path.open() as spec:
            reads = subprocess.Popen(
                [sys.executable, "-m", "meshmart_devstack.bench", "generate"],
                stdin=spec,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        results: dict[str, Any] = {}

        def sample_until(stop: threading.Event) -> None:
            while not stop.is_set():
                samples.append({"t": round(time.monotonic() - started, 1), **self.rss()})
                stop.wait(10.0)

        # The checkout generator runs in this thread's subprocess call; sample meanwhile.
        sampler_done = threading.Event()
        sampler = threading.Thread(target=sample_until, args=(sampler_done,), daemon=True)
        sampler.start()
        try:
            # The read load is already running: the services will not go idle first.
            results["checkout"] = self.checkout_step(checkout_rate, seconds, settle_first=False)
            out, err = reads.communicate(timeout=seconds + 120)
            if reads.returncode != 0:
                raise BenchError(f"the soak read generator failed:\n{err[-3000:]}")
            results["reads"] = json.loads(out)["step"]
        finally:
            sampler_done.set()
            sampler.join(timeout=15)
            if reads.poll() is None:
                reads.kill()
        samples.append({"t": round(time.monotonic() - started, 1), **self.rss()})
        results["rss_samples"] = samples
        results["growth"] = rss_growth(samples)
        results["audit"] = self.audit_checkouts()
        return results

    # ------------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        """Every phase; writes the report and returns its data."""
        self.dir.mkdir(parents=True, exist_ok=True)
        started = datetime.now(UTC)
        self.report = {
            "started_at": started.isoformat(timespec="seconds"),
            "options": {
                "quick": self.options.quick,
                "soak": self.options.soak,
                "backend": self.options.backend,
                "step_seconds": self.options.step_seconds,
                "measure_seconds": self.options.measure_seconds,
                "checkout_step_seconds": self.options.checkout_step_seconds,
                "checkout_confirm_seconds": self.options.checkout_confirm_seconds,
                "read_timeout_s": self.options.read_timeout,
                "checkout_timeout_s": self.options.checkout_timeout,
                "shoppers": self.options.shoppers,
            },
            "machine": machine(),
        }
        try:
            self.report["generator"] = self.generator_ceiling()
            self.start_stack()
            bare_url = self.spawn(
                "bare-app", "bare-app", "--database-url", self.product_database_url
            )
            self.wait_http("bare-app", bare_url + "/api/v1/products/1")
            categories = self.run_async(lambda api: api.categories())
            category = categories[0]["slug"] if categories else "none"
            detail_paths = [f"/api/v1/products/{i}" for i in range(1, 46)]
            search_paths = [
                "/api/v1/products?" + q.format(category=category) for q in SEARCH_QUERIES
            ]
            self.report["idle_cpu_share"] = self.measure_idle_cpu()
            self.report["product_detail"] = self.measure_reads(
                "product detail", detail_paths, bare_url
            )
            self.report["search"] = self.measure_reads("search", search_paths, bare_url)
            self.report["rss_after_reads_mb"] = self.rss()
            self.report["checkout"] = self.measure_checkout()
            self.report["rss_after_run_mb"] = self.rss()
            self.say(f"resident memory after the run (MB): {self.report['rss_after_run_mb']}")
            if self.options.soak:
                detail_max = self.report["product_detail"]["service"]["max_rate"] or 200.0
                checkout_max = self.report["checkout"]["confirmed_rate"] or 10.0
                self.report["soak"] = self.soak(
                    detail_paths[:20] + search_paths,
                    read_rate=float(round(0.3 * detail_max)),
                    checkout_rate=float(max(1, round(0.3 * checkout_max))),
                )
                self.say(f"soak RSS growth (MB): {self.report['soak']['growth']}")
        finally:
            self.report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            self.report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
            self.stop()
            paths = write_report(self.report, self.dir)
            self.say("report: " + ", ".join(str(p) for p in paths))
        return self.report


def rss_growth(samples: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per service: RSS at the first and last sample, the change, and the trend in MB/min.

    The trend is a least-squares slope over the samples, so one late spike
    (a collection not yet run) weighs less than a steady climb.
    """
    growth: dict[str, dict[str, float | None]] = {}
    names = [key for key in samples[0] if key != "t"] if samples else []
    for name in names:
        points = [(s["t"], s[name]) for s in samples if s.get(name) is not None]
        if len(points) < 2:
            growth[name] = {"first": None, "last": None, "change": None, "mb_per_min": None}
            continue
        n = len(points)
        mean_t = sum(t for t, _ in points) / n
        mean_v = sum(v for _, v in points) / n
        var_t = sum((t - mean_t) ** 2 for t, _ in points)
        slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var_t if var_t else 0.0
        growth[name] = {
            "first": points[0][1],
            "last": points[-1][1],
            "change": round(points[-1][1] - points[0][1], 1),
            "mb_per_min": round(slope * 60, 2),
        }
    return growth
