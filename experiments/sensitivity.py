"""Sensitivity: held-out return against the coupling weight alpha (`central`, `central-clip`,
`dnc`) and the distillation weight lambda (`central`), 4 values each, on two tasks, 3 seeds.

Each (task, method, field) is one program: the 4 values x 3 seeds are vmapped (`--sweep`),
so every value sees the same seeds, partitions and initial params. Each task keeps its
preset's settings (`distillax.presets`) at 300k env steps per run, so that `make experiments`
fits its 75 minutes on 2 cores: at 1M (the sweeps' first budget) they took 1467 s, and
most cartpole values had saturated at ~500. Besides the final held-out return, each value
gets the mean over its learning curve (~10 evaluations), which tells apart values that
reach the same end.

    .venv/bin/python experiments/sensitivity.py          # the time: experiments/results/README.md

Writes experiments/results/sensitivity.{json,md,png}; `--render` redraws them from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from harness import SMALL, _ci, interval

from distillax import Config, methods, presets, train
from distillax.evaluation import by_member, mean_ci95

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TASKS = {"cartpole": 300_000, "pointgoal": 300_000}  # task: env steps per run
SWEEPS = (  # (method, field, values): log-spaced around each default
    ("central", "coupling_coef", (0.001, 0.01, 0.1, 1.0)),
    ("central-clip", "coupling_coef", (0.3, 1.0, 3.0, 10.0)),
    ("dnc", "coupling_coef", (0.001, 0.01, 0.1, 1.0)),
    ("central", "distill_coef", (0.01, 0.1, 1.0, 10.0)),
)
SYMBOL = {"coupling_coef": "alpha", "distill_coef": "lambda"}


def default_of(method: str, field: str) -> float:
    """The value a run of `method` uses when `field` is not given."""
    if field == "coupling_coef":
        return methods.get(method).coupling_coef
    return getattr(Config(), field)


def config_of(task: str, method: str, field: str, values: Sequence[float], steps: int,
              seeds: int, small: bool) -> Config:
    base = presets.preset(task)
    base.update(total_steps=steps)
    if small:
        base.update(SMALL)
    config = Config(**{**base, "method": method, "seeds": seeds,
                       "sweep": ((field, tuple(values)),)})
    every = max(1, config.num_iterations // 10)
    return config.replace(eval_every=every, log_every=min(every, 5))


def members(config: Config, summary: Any) -> list[dict[str, Any]]:
    """Per swept value: final held-out returns (central and teachers, greedy) and the mean
    over the learning curve, each a mean over seeds with its 95% interval and per seed."""
    (field, values), = config.sweep
    evaluated = [r["central_return_seeds"] for r in summary.history
                 if "central_return_seeds" in r]
    curve = by_member(config, list(np.mean(evaluated, axis=0)))  # per run: mean over the curve
    out = []
    for value, final, per_seed in zip(values, summary.final["members"], curve):
        m = {"value": value}
        for k in ("central_greedy", "teachers_greedy"):
            m[k], m[f"{k}_ci95"], m[f"{k}_seeds"] = final[k], final[f"{k}_ci95"], final[
                f"{k}_seeds"]
        c, lo, hi = mean_ci95(per_seed)
        m["curve_mean"], m["curve_mean_ci95"], m["curve_mean_seeds"] = c, [lo, hi], [
            float(v) for v in per_seed]
        out.append(m)
    return out


def table(result: dict[str, Any]) -> str:
    lines = ["# Sensitivity to alpha and lambda", "",
             f"Command: `{result['command']}`. Per task: {result['seeds']} seeds per value "
             "(vmapped with the values in one program), greedy held-out returns, mean over "
             "seeds [95% Student-t interval]; **bold**: the default value. Every value has the "
             "same seeds, so its central return is compared with the default's seed by seed "
             "(the mean difference and its 95% Student-t interval).", ""]
    for s in result["sweeps"]:
        lines += [f"## {s['task']}, {s['method']}: {SYMBOL[s['field']]} (`{s['field']}`)",
                  "", f"{s['total_steps']:,} env steps per run, {s['wall_s']:.0f} s for the "
                  "program.", "",
                  f"| {SYMBOL[s['field']]} | central (held-out) | central − default, paired "
                  "| central, mean over the curve | teachers (own cells) |",
                  "|---|---|---|---|---|"]
        default = next((m for m in s["members"] if m["value"] == s["default"]), None)
        for m in s["members"]:
            v = f"**{m['value']:g}**" if m is default else f"{m['value']:g}"
            paired = "—" if default is None or m is default else interval(
                np.subtract(m["central_greedy_seeds"], default["central_greedy_seeds"]), 1)
            lines.append(f"| {v} | {_ci(m['central_greedy'], m['central_greedy_ci95'], 1)} | "
                         f"{paired} | {_ci(m['curve_mean'], m['curve_mean_ci95'], 1)} | "
                         f"{_ci(m['teachers_greedy'], m['teachers_greedy_ci95'], 1)} |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tasks = list(dict.fromkeys(s["task"] for s in result["sweeps"]))
    cols = list(dict.fromkeys((s["method"], s["field"]) for s in result["sweeps"]))
    fig = Figure(figsize=(3.6 * len(cols), 3.0 * len(tasks)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tasks), len(cols), squeeze=False)
    for s in result["sweeps"]:
        ax = axes[tasks.index(s["task"])][cols.index((s["method"], s["field"]))]
        x = [m["value"] for m in s["members"]]
        for key, style, label in (("central_greedy", "o-", "final"),
                                  ("curve_mean", "s--", "mean over the curve")):
            y = [m[key] for m in s["members"]]
            lo = [m[f"{key}_ci95"][0] for m in s["members"]]
            hi = [m[f"{key}_ci95"][1] for m in s["members"]]
            ax.plot(x, y, style, label=label)
            ax.fill_between(x, lo, hi, alpha=0.2)
        ax.axvline(s["default"], color="grey", lw=1, ls=":", label="default")
        ax.set_xscale("log")
        ax.set_title(f"{s['task']} / {s['method']}: {SYMBOL[s['field']]}", fontsize=9)
        ax.set_xlabel(SYMBOL[s["field"]])
        ax.set_ylabel("central held-out return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=100)


def render(stem: str) -> str:
    with open(stem + ".json") as f:
        result = json.load(f)
    md = table(result)
    with open(stem + ".md", "w") as f:
        f.write(md + "\n![sensitivity](sensitivity.png)\n")
    plot(result, stem + ".png")
    return md


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--total-steps", type=int, default=0,
                   help="env steps per run (0: each task's budget in TASKS)")
    p.add_argument("--sweeps", default="", help="indices into SWEEPS (default: all)")
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--small", action="store_true", help="a smoke run of the script")
    p.add_argument("--render", action="store_true", help="only redraw from <out>/sensitivity.json")
    a = p.parse_args(argv)
    if a.seeds < 2:
        p.error(f"--seeds {a.seeds}: at least 2 (the intervals are over seeds)")
    stem = os.path.join(a.out, "sensitivity")
    if a.render:
        print(render(stem))
        return {}
    picked = [SWEEPS[int(i)] for i in a.sweeps.split(",")] if a.sweeps else list(SWEEPS)
    command = shlex.join(["python", "experiments/sensitivity.py",
                          *(sys.argv[1:] if argv is None else argv)])
    result = {"command": command, "seeds": a.seeds, "sweeps": []}
    for task in a.tasks.split(","):
        for method, field, values in picked:
            config = config_of(task, method, field, values, a.total_steps or TASKS[task],
                               a.seeds, a.small)
            t = time.perf_counter()
            _, summary = train(config, log=lambda line: None)
            wall = time.perf_counter() - t
            ms = members(config, summary)
            result["sweeps"].append({"task": task, "method": method, "field": field,
                                     "default": default_of(method, field),
                                     "total_steps": config.total_steps, "wall_s": wall,
                                     "members": ms})
            print(f"{task} {method} {field}: " + ", ".join(
                f"{m['value']:g} -> {m['central_greedy']:.1f}" for m in ms) + f" ({wall:.0f} s)",
                flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    print(render(stem))
    return result


if __name__ == "__main__":
    main()
