"""Does dividing the context space help? The teachers, each in its own cell, against one PPO
policy that sees the context (`ppo-context`) on the whole space, at the same env-step budget:
DnC's claim that local policies learn a wide context distribution faster than one policy.

No training of its own: it reads the learning curves of the results tables
(`experiments/results/<task>.json`, written by `experiments/<task>.py`) and compares, at each
evaluation point of the curves, over the 5 seeds:
- the teachers' training return (sampled actions, each teacher in its cell, mean over the
  cells) with `ppo-context`'s training return (sampled actions, the whole space): how fast
  each learns the task it is given;
- the distilled central policy's held-out return (greedy) with `ppo-context`'s held-out
  return (greedy): whether the central policy keeps what the teachers gained;
- at the end of the budget, for every row with a central policy (every method but `ppo`),
  the teachers' held-out return (greedy, each teacher on the held-out contexts of its own
  cell) and the central policy's, with `ppo-context`'s.
Differences are Welch 95% intervals (the runs of two methods are independent).

    .venv/bin/python experiments/dividing.py      # seconds; after the tables' scripts

Writes experiments/results/dividing.{md,png}.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from harness import RESULTS, interval
from protocol import welch

from distillax.evaluation import mean_ci95

BASELINE = "ppo-context"
DIVIDED = ("independent", "central", "dnc")  # teachers in cells, distilled into a central
# cartpole's gain sign and pointgoal's goal direction make the best actions conflict across
# the space; on pendulum and the physics task one controller serves it all (the task
# scripts' docstrings)
TASKS = ("cartpole", "pointgoal", "pendulum", "double-pendulum-physics")
FRACTIONS = (0.1, 0.2, 0.3, 0.5, 1.0)  # of the budget: the table's points


def welch_ci95(a: Any, b: Any) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): a two-sided 95% Welch interval for the difference of
    the means of two independent samples (unequal variances, Welch-Satterthwaite dof)."""
    import scipy.stats

    d, se, dof = welch(a, b)
    if se == 0.0:
        return d, d, d
    half = float(scipy.stats.t.ppf(0.975, dof)) * se
    return d, d - half, d + half


def curves(row: dict[str, Any], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(env steps `[N]`, per-seed values `[N, S]`) of the curve points that hold `key`
    (`teacher_return` or `central_return`)."""
    pts = [p for p in row["curve"] if f"{key}_seeds" in p]
    return (np.asarray([p["env_steps"] for p in pts]),
            np.asarray([p[f"{key}_seeds"] for p in pts], np.float64))


def at(row: dict[str, Any], key: str, fraction: float) -> tuple[int, np.ndarray]:
    """(env steps, per-seed values `[S]`) of the curve point nearest `fraction` of the
    budget."""
    steps, values = curves(row, key)
    i = int(np.argmin(np.abs(steps - fraction * row["config"]["total_steps"])))
    return int(steps[i]), values[i]


def table(result: dict[str, Any]) -> str:
    rows = {r["method"]: r for r in result["rows"]}
    d = result.get("digits", 1)
    base = rows[BASELINE]
    lines = [f"## {result['task']}", "",
             f"Source: `{result['command']}` ({base['config']['total_steps']:,} env steps per "
             f"run, {base['config']['seeds']} seeds). Mean [95% interval over seeds]; "
             f"Δ = method − {BASELINE}, [Welch 95% interval]; **bold**: the interval "
             "excludes 0.", ""]
    for key, what in (("teacher_return", "Training return (sampled; teachers in their own "
                                          f"cells, {BASELINE} on the whole space)"),
                      ("central_return", "Held-out return (greedy; the distilled central "
                                         f"policy, {BASELINE} its own policy)")):
        head = ["env steps"] + [BASELINE] + [
            f"{m}: value, Δ" for m in DIVIDED]
        lines += [f"{what}:", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for fr in FRACTIONS:
            s0, v0 = at(base, key, fr)
            cells = [f"{s0:,}", interval(v0, d)]
            for m in DIVIDED:
                s, v = at(rows[m], key, fr)
                assert s == s0, (m, s, s0)  # the same budget: the same evaluation points
                cells.append(_versus(v, v0, d))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    v0 = base["central_greedy_seeds"]
    lines += [f"At the end of the budget, held-out (greedy), against {BASELINE}'s "
              f"{interval(v0, d)}:", "",
              "| method | teachers (own cells): value, Δ | central: value, Δ |",
              "|---|---|---|"]
    for m, r in rows.items():
        if r["gap_diff"] is not None:  # a row with a central policy and teachers
            lines.append(f"| {m} | " + " | ".join(_versus(r[f"{k}_greedy_seeds"], v0, d)
                                                 for k in ("teachers", "central")) + " |")
    lines.append("")
    return "\n".join(lines)


def _versus(values: Any, baseline: Any, digits: int) -> str:
    """"mean [interval], Δ [Welch interval]" of per-seed values against the baseline's, the
    Δ in bold where its interval excludes 0."""
    diff, lo, hi = welch_ci95(values, baseline)
    mark = "**" if lo > 0 or hi < 0 else ""
    return (f"{interval(values, digits)}, {mark}{diff:+.{digits}f} "
            f"[{lo:.{digits}f}, {hi:.{digits}f}]{mark}")


def plot(results: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(11, 3.6 * len(results)), squeeze=False)
    for (ax_t, ax_c), result in zip(axes, results):
        rows = {r["method"]: r for r in result["rows"]}
        for i, m in enumerate((BASELINE, *DIVIDED)):
            color = plt.get_cmap("tab10")(i)
            for ax, key in ((ax_t, "teacher_return"), (ax_c, "central_return")):
                steps, v = curves(rows[m], key)
                ci = np.asarray([mean_ci95(x) for x in v])
                ax.plot(steps / 1e6, ci[:, 0], color=color, label=m)
                ax.fill_between(steps / 1e6, ci[:, 1], ci[:, 2], color=color, alpha=0.15)
        ax_t.set(title=f"{result['task']}: training return (teachers in their cells)",
                 xlabel="env steps per run (millions)", ylabel="return")
        ax_c.set(title=f"{result['task']}: held-out, greedy (central policy)",
                 xlabel="env steps per run (millions)")
        ax_c.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(tasks: tuple[str, ...] = TASKS, out: str = RESULTS) -> str:
    results = []
    for t in tasks:
        with open(os.path.join(out, t + ".json")) as f:
            results.append(json.load(f))
    md = "# Dividing: teachers in their cells against one context-aware policy\n\n" + (
        "Command: `python experiments/dividing.py` (from the tables' JSON).\n\n"
        + "\n".join(table(r) for r in results) + "\n![dividing](dividing.png)\n")
    with open(os.path.join(out, "dividing.md"), "w") as f:
        f.write(md)
    plot(results, os.path.join(out, "dividing.png"))
    return md


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("tasks", nargs="*", default=list(TASKS), help="tables to read")
    p.add_argument("--out", default=RESULTS, help="the tables' directory, and this output's")
    # the table scripts' other options (`make experiments ARGS=...`) do not apply here
    a, _ = p.parse_known_args()
    print(main(tuple(a.tasks), a.out))
