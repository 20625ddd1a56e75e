"""ant-goal (DnC's Ant Position) at GPU scale: env-steps/s and learning curves per method.

    python benchmarks/gpu_ant_goal.py                       # GPU: 4096 envs, P in {4, 8}
    python benchmarks/gpu_ant_goal.py --methods central dnc --partitions 8 --total-steps 5e7
    python benchmarks/gpu_ant_goal.py --small --out /tmp/a  # CPU smoke run (tests use it)

For each method in {ppo, central, dnc} and each P (ppo has one teacher, so it runs once):
one training run of `preset("ant-goal")` (thousands of envs split over the P teachers),
recording the compile time, the training env-steps/s, the whole run's wall time and the
learning curve: per report (every `log_every` iterations) the teachers' mean episode return
and, every `eval_every` iterations, the central policy's greedy held-out return (for ppo,
its single context-blind teacher's). Writes `<out>/gpu_ant_goal.json` and `.md`.

`--small` runs the same code at a size a 2-core CPU compiles in about a minute (4 envs,
8 steps, a 2-teacher `central` run unless `--methods` / `--partitions` say otherwise) and
stops one iteration before the end, so it compiles the training program only (no evaluation
program): it checks the script, not the task's learning. The GPU figures in
benchmarks/gpu_ant_goal.md are "not run" until someone runs this on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))

# The size of the CPU smoke run: tests/test_brax_tasks.py's ant-goal smoke run is this run.
SMALL = dict(num_envs=4, num_steps=8, num_minibatches=2, update_epochs=1, hidden_sizes=(8,),
             kmeans_samples=200, context_candidates=4, eval_contexts=2, eval_every=1000,
             log_every=2, normalize_obs=True, seed=3, total_steps=4 * 8 * 3)


def run_one(method: str, partitions: int, total_steps: int, small: bool,
            log=print) -> dict[str, Any]:
    """One training run; returns its speeds and learning curve."""
    import jax

    from distillax.config import Config
    from distillax.presets import preset
    from distillax.run import train

    fields = ({"task": "ant-goal", **SMALL} if small
              else {**preset("ant-goal"), "total_steps": total_steps})
    cfg = Config(method=method, partitions=partitions, **fields)
    t0 = time.perf_counter()
    stop_after = cfg.num_iterations - 1 if small else None
    state, s = train(cfg, log=lambda _: None, stop_after=stop_after)
    wall = time.perf_counter() - t0
    curve = [dict(env_steps=r["env_steps"],
                  teacher_return=float(sum(r["teacher_return"]) / len(r["teacher_return"])),
                  central_return=r.get("central_return"))
             for r in s.history]
    out = dict(method=method, partitions=cfg.partitions, num_envs=cfg.num_envs,
               iterations=s.iteration, env_steps=s.iteration * cfg.steps_per_iteration,
               compile_s=s.compile_s, train_s=s.train_s, steps_per_s=s.steps_per_s,
               wall_s=wall, final=s.final, curve=curve,
               device=str(jax.devices()[0].device_kind))
    log(f"{method} P={cfg.partitions}: {s.steps_per_s:,.0f} env-steps/s, compile "
        f"{s.compile_s:.0f} s, wall {wall:.0f} s, last teacher return "
        f"{curve[-1]['teacher_return']:.2f}" if curve else "no reports")
    return out


def write(runs: list[dict], out_dir: str, command: str) -> None:
    import jax

    os.makedirs(out_dir, exist_ok=True)
    meta = dict(command=command, device=str(jax.devices()[0].device_kind),
                backend=jax.default_backend(), machine=platform.platform(), runs=runs)
    with open(os.path.join(out_dir, "gpu_ant_goal.json"), "w") as f:
        json.dump(meta, f, indent=2, default=str)
    lines = ["# ant-goal at scale", "", f"Command: `{command}`  ",
             f"Device: {meta['device']} ({meta['backend']})", "",
             "| method | P | envs | env steps | env-steps/s | compile s | wall s | "
             "last teacher return | last central return |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        last = r["curve"][-1] if r["curve"] else {}
        cr = [c["central_return"] for c in r["curve"] if c["central_return"] is not None]
        lines.append(f"| {r['method']} | {r['partitions']} | {r['num_envs']} | "
                     f"{r['env_steps']:,} | {r['steps_per_s']:,.0f} | {r['compile_s']:.0f} | "
                     f"{r['wall_s']:.0f} | {last.get('teacher_return', float('nan')):.2f} | "
                     f"{cr[-1] if cr else 'n/a'} |")
    with open(os.path.join(out_dir, "gpu_ant_goal.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=None, choices=("ppo", "central", "dnc"))
    p.add_argument("--partitions", nargs="+", type=int, default=None)
    p.add_argument("--total-steps", type=float, default=2e7)
    p.add_argument("--small", action="store_true", help="a tiny CPU smoke run")
    p.add_argument("--out", default=os.path.join(HERE, "results_gpu_ant_goal"))
    a = p.parse_args(argv)
    methods = a.methods or (["central"] if a.small else ["ppo", "central", "dnc"])
    parts = a.partitions or ([2] if a.small else [4, 8])
    runs = []
    for method in methods:
        for P in ([1] if method == "ppo" else parts):
            runs.append(run_one(method, P, int(a.total_steps), a.small))
    write(runs, a.out, "python benchmarks/gpu_ant_goal.py " + " ".join(argv or []))
    return runs


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
