"""How the central policy's optimiser decides how much of its teachers it keeps: its step size
as a ratio to the teachers', constant or annealed, and its epochs per iteration, on every
task of the results tables (method `central`, vmapped sweep over the ratio, 3 seeds).

    .venv/bin/python experiments/central_fit.py [--tasks pointgoal,...] [--steps N]

For each (task, schedule, epochs) one program trains every ratio x seed; each row gives the
central policy's held-out return (greedy), the teachers' in their own cells, and the paired
gap central - teachers with its 95% interval over seeds. Appends to
experiments/results/central_fit.json (a row per task, schedule, epochs and ratio) and
rewrites central_fit.md from it.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from harness import RESULTS, TABLES, interval

from distillax import Config, presets, train

CYCLIC = ("pointgoal",)  # tasks whose context features became (cos, sin) in this sweep's time

RATIOS = (0.4, 1.0, 2.0, 4.0)  # central lr / teachers' lr; 0.4 is the old default (1e-3)


def run(task: str, steps: int, seeds: int, anneal: bool, epochs: int,
        ratios: tuple[float, ...] = RATIOS) -> list[dict]:
    base = presets.preset(task)
    lr = base.get("learning_rate", Config().learning_rate)
    config = Config(**{**base, "method": "central", "total_steps": steps, "seeds": seeds,
                       "anneal_central_lr": anneal, "distill_epochs": epochs,
                       "sweep": (("central_learning_rate", tuple(r * lr for r in ratios)),),
                       "eval_every": 10**6})
    t = time.perf_counter()
    _, summary = train(config, log=lambda line: None)
    wall = time.perf_counter() - t
    rows = []
    for ratio, m in zip(ratios, summary.final["members"]):
        central = np.asarray(m.get("central_greedy_seeds", [m["central_greedy"]]))
        teachers = np.asarray(m.get("teachers_greedy_seeds", [m["teachers_greedy"]]))
        rows.append({"task": task, "steps": steps, "seeds": seeds, "anneal": anneal,
                     "epochs": epochs or config.update_epochs, "ratio": ratio,
                     "central_lr": ratio * lr, "central": central.tolist(),
                     "teachers": teachers.tolist(), "wall_s": wall,
                     "kept": m.get("kept_seeds", [m.get("kept")]),
                     "features": "cyclic" if config.task in CYCLIC else "linear"})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["# The central policy's step size, schedule and epochs", "",
             "Method `central`, each task's preset, `experiments/central_fit.py`; greedy "
             "held-out returns, mean [95% Student-t interval] over seeds; the gap is paired "
             "per seed.", "",
             "| task | steps | seeds | schedule | epochs | central lr (ratio) | central | "
             "teachers | gap: central − teachers |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap = np.asarray(r["central"]) - np.asarray(r["teachers"])
        task = r["task"] + (" (cos, sin)" if r.get("features") == "cyclic" else "")
        lines.append(f"| {task} | {r['steps']:,} | {r['seeds']} | "
                     f"{'annealed' if r['anneal'] else 'constant'} | {r['epochs']} | "
                     f"{r['central_lr']:.2g} ({r['ratio']:g}) | {interval(r['central'], 1)} | "
                     f"{interval(r['teachers'], 1)} | {interval(gap, 2)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", default=",".join(TABLES))
    p.add_argument("--steps", type=int, default=300_000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--schedules", default="annealed,constant")
    p.add_argument("--epochs", default="0", help="distill_epochs values (0: every epoch)")
    p.add_argument("--ratios", default=",".join(map(str, RATIOS)))
    p.add_argument("--out", default=RESULTS)
    a = p.parse_args(argv)
    path = os.path.join(a.out, "central_fit.json")
    rows = json.load(open(path)) if os.path.exists(path) else []
    for task in a.tasks.split(","):
        for schedule in a.schedules.split(","):
            for epochs in map(int, a.epochs.split(",")):
                new = run(task, a.steps, a.seeds, schedule == "annealed", epochs,
                          tuple(map(float, a.ratios.split(","))))
                same = lambda r: (r["task"], r["steps"], r["anneal"], r["epochs"],  # noqa: E731
                                  r["ratio"], r.get("features", "linear"))
                news = {same(r) for r in new}
                rows = [r for r in rows if same(r) not in news] + new
                with open(path, "w") as f:
                    json.dump(rows, f, indent=1)
                with open(os.path.join(a.out, "central_fit.md"), "w") as f:
                    f.write(markdown(rows))
                print("\n".join(markdown(new).splitlines()[-len(new):]), flush=True)


if __name__ == "__main__":
    main()
