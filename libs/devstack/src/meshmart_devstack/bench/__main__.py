"""`python -m meshmart_devstack.bench run|generate|bare-app|trivial-server`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m meshmart_devstack.bench", description="MeshMart's benchmark (make bench)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start a fresh stack, measure it, write the report")
    run.add_argument("--out", type=Path, default=Path("var/bench"), help="report folder")
    run.add_argument(
        "--quick",
        action="store_true",
        default=_flag("BENCH_QUICK"),
        help="short steps and a 20 s checkout run (env BENCH_QUICK=1)",
    )
    run.add_argument(
        "--soak",
        action="store_true",
        default=_flag("SOAK"),
        help="add a 5-minute soak sampling memory (env SOAK=1)",
    )
    run.add_argument(
        "--backend",
        choices=["local", "rocketmq"],
        default=os.environ.get("BENCH_BACKEND") or "local",
        help="local: SQLite + local bus; rocketmq: MariaDB + RocketMQ (env BENCH_BACKEND)",
    )
    run.add_argument("--soak-seconds", type=float, default=300.0)
    commands.add_parser("generate", help="run one step described by a JSON spec on stdin")
    bare = commands.add_parser("bare-app", help="serve the bare FastAPI baseline")
    bare.add_argument("--database-url", required=True)
    bare.add_argument("--port", type=int, required=True)
    trivial = commands.add_parser("trivial-server", help="serve the trivial HTTP server")
    trivial.add_argument("--port", type=int, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        from meshmart_devstack.bench.generate import main as generate

        return generate()
    if args.command == "bare-app":
        import uvicorn

        from meshmart_devstack.bench.bare_app import create_bare_app

        # The options `python -m product_service serve` gives uvicorn.
        uvicorn.run(
            create_bare_app(args.database_url),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
        )
        return 0
    if args.command == "trivial-server":
        from meshmart_devstack.bench.arrivals import run_loop
        from meshmart_devstack.bench.trivial_server import serve

        run_loop(serve("127.0.0.1", args.port))
        return 0
    from meshmart_devstack.bench.runner import Bench, BenchError, BenchOptions

    options = BenchOptions.for_run(
        args.out.resolve(), quick=args.quick, soak=args.soak, backend=args.backend
    )
    options.soak_seconds = args.soak_seconds
    try:
        report = Bench(options).run()
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    audit = (report.get("checkout") or {}).get("audit") or {}
    return 0 if audit.get("ok", True) else 2


if __name__ == "__main__":
    raise SystemExit(main())
