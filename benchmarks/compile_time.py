"""Seconds spent compiling in a first and a second run of the same command (persistent cache).

Runs each command twice, each time in a fresh process, with one fresh temporary compilation cache
(CFMC_CACHE) shared by the two runs, and prints per run the wall seconds and the seconds JAX
spent tracing, lowering and XLA-compiling (jax.monitoring events; a persistent-cache hit counts
its loading time under XLA), and how many programs were compiled.

    python benchmarks/compile_time.py [--only infill design] [--by-function 15]

Programs with host callbacks (`jax.pure_callback`) are never written to JAX's persistent cache;
the moves of a run with conditioners (design) are two callback-free programs each, around one host
call of the conditioners, so a second run loads them from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TEMPLATE = "225-a-[?]-0-0-0-b-[?]-1/2-1/2-c-[?]-1/4-1/4-e-[?]-[?]-0-0"
COMMANDS = {
    "infill": ["infill", TEMPLATE, "--differ", "0,1", "--differ", "0,2", "--differ", "0,3",
               "--differ", "1,2", "--differ", "1,3", "--differ", "2,3",
               "--chains", "64", "--sweeps", "4", "--burn-in", "2", "--seed", "0", "--force"],
    "design": ["design", "--spacegroup", "225", "--target", "band_gap=2.0",
               "--target", "formation_energy=-3.0", "--chains", "16", "--sweeps", "2",
               "--burn-in", "1", "--force"],
}
EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "xla",
}
MARK = "COMPILE_TIME_JSON "


def child(argv: list[str]) -> int:
    """Run one cfmc command in this process and print its compile seconds as JSON."""
    import jax

    from cfmc.cli import main as cli_main

    total = dict.fromkeys(EVENTS.values(), 0.0)
    count = [0]
    by_function: dict[str, float] = {}

    def on_event(event: str, duration: float, **kwargs) -> None:
        name = EVENTS.get(event)
        if name is not None:
            total[name] += duration
            count[0] += name == "xla"
            fun = str(kwargs.get("fun_name", "?"))
            by_function[fun] = by_function.get(fun, 0.0) + duration

    jax.monitoring.register_event_duration_secs_listener(on_event)
    t0 = time.perf_counter()
    try:
        rc = cli_main(argv)
    except SystemExit as e:
        rc = e.code
    total["wall"] = time.perf_counter() - t0
    total["programs"] = count[0]
    total["by_function"] = by_function
    print(MARK + json.dumps(total), flush=True)
    return int(rc or 0)


def run_twice(name: str, argv: list[str]) -> list[dict[str, float]]:
    """The command twice in fresh processes with one fresh compilation cache."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CFMC_CACHE": tmp, "CFMC_COMPILE_CACHE": "1"}
        rows = []
        for _ in range(2):
            out = subprocess.run(
                [sys.executable, __file__, "--child", *argv, "--out", f"{tmp}/run"],
                env=env, capture_output=True, text=True, check=False)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith(MARK)]
            if out.returncode or not lines:
                raise RuntimeError(f"{name} failed ({out.returncode}):\n{out.stderr[-3000:]}")
            rows.append(json.loads(lines[-1][len(MARK):]))
        return rows


def main() -> int:
    """Time the commands and print the table."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", default=list(COMMANDS), choices=list(COMMANDS))
    p.add_argument("--by-function", type=int, default=0, metavar="N",
                   help="also print the N functions with the most compile seconds in run 2")
    args = p.parse_args()
    print(f"{'command':<8}{'run':>4}{'wall s':>8}{'compile s':>10}{'trace':>7}{'lower':>7}"
          f"{'xla':>7}{'programs':>9}", flush=True)
    for name in args.only:
        rows = run_twice(name, COMMANDS[name])
        for k, r in enumerate(rows, start=1):
            comp = r["trace"] + r["lower"] + r["xla"]
            print(f"{name:<8}{k:>4}{r['wall']:8.1f}{comp:10.1f}{r['trace']:7.1f}"
                  f"{r['lower']:7.1f}{r['xla']:7.1f}{r['programs']:>9}", flush=True)
        top = sorted(rows[-1]["by_function"].items(), key=lambda kv: -kv[1])[:args.by_function]
        for fun, sec in top:
            print(f"    run 2: {sec:6.2f} s  {fun}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
