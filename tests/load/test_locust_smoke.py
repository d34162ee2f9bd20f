"""A short smoke run of the Locust shoppers (loadgen/) against the real processes.

Not a measurement: a few seconds of shoppers with short think times, to show
that every task of the load generator works against the API as it is (no
failed request) and that the run reaches the checkout, not only the catalogue.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import launch_stack

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadgen" / "locustfile.py"


def _locust_available() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import locust"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.fail(
            "Locust is not installed in this environment; `make install` (uv sync) installs "
            f"the `load` dependency group with it:\n{probe.stderr[-2000:]}"
        )


def test_the_locust_shoppers_run_against_the_stack_without_a_failure(tmp_path: Path) -> None:
    _locust_available()
    # One client address for every shopper: let them all log in.
    with launch_stack(tmp_path, extra_env={"RATE_LIMIT_LOGIN_PER_MINUTE": "100000"}) as stack:
        env = {
            **os.environ,
            **{f"MESHMART_{name.upper()}_URL": url for name, url in stack.urls.items()},
            "LOADGEN_WAIT_MIN": "0.05",
            "LOADGEN_WAIT_MAX": "0.3",
        }
        env.pop("MESHMART_GATEWAY", None)
        prefix = tmp_path / "locust"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "--users",
                "8",
                "--spawn-rate",
                "8",
                "--run-time",
                "15s",
                "--stop-timeout",
                "10",
                "--csv",
                str(prefix),
                "--only-summary",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    output = run.stdout[-4000:] + run.stderr[-4000:]
    with Path(f"{prefix}_failures.csv").open() as failures:
        failed = list(csv.DictReader(failures))
    assert failed == [], output
    assert run.returncode == 0, output
    with Path(f"{prefix}_stats.csv").open() as stats:
        counts = {row["Name"]: int(row["Request Count"]) for row in csv.DictReader(stats)}
    assert counts.get("/api/v1/products/[id]", 0) > 0, counts
    assert counts.get("/api/v1/auth/register", 0) > 0, counts
    assert counts.get("/api/v1/orders [checkout]", 0) > 0, counts
