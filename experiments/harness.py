"""The results table of one task: every method, several seeds vmapped, equal env-step budgets.

In the spirit of DnC's Table 1 and Distral's comparisons. Each task's script
(`experiments/<task>.py`) names its config and budget and calls `main`; this module trains
the runs of `RUNS` (plus a task's extra rows), then writes
`experiments/results/<task>.{json,md,png}`:

- the central policy's mean held-out return (greedy actions) with a 95% Student-t interval
  over seeds, and with sampled actions;
- the teachers' mean held-out return, each teacher on contexts of its own cell;
- the distillation gap: central - teachers, and central / teachers where both are > 0
  (for a negative return a ratio reads backwards, so it is left out there);
- learning curves: held-out central return against env steps per seed and against wall
  time, and the teachers' training return against env steps (each the mean and 95% band
  over seeds).

For `ppo` there is no central policy: its single policy fills the central columns, and the
teacher and gap columns stay empty.
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

from distillax import Config, methods, presets, train
from distillax.evaluation import mean_ci95

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# Env steps per run of every classic table: half the presets' 1M, so that `make experiments`
# fits its 75 minutes on 2 cores (experiments/results/README.md gives the times). At 1M
# cartpole had every method but ppo-blind at 478-500; at 500k fourrooms ends within ~0.1 of
# its 1M figures.
TABLE_STEPS = 500_000
# Evaluations per learning curve (each evaluates every seed on every held-out context)
CURVE_POINTS = 20
# the tasks of the results tables, in the order of the summary
TABLES = ("cartpole", "pendulum", "pointgoal", "fourrooms", "double-pendulum-physics")


def script(task: str) -> str:
    """The file name of `task`'s table script in experiments/ (a task name may hold `-`)."""
    return task.replace("-", "_") + ".py"


# (row name, config changes): the runs of every table, in table order
RUNS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("ppo-blind", dict(method="ppo")),
    ("ppo-context", dict(method="ppo", teacher_sees_context=True)),
    ("independent", dict(method="independent")),
    ("central", dict(method="central")),
    ("central-kl", dict(method="central-kl")),
    ("central-clip", dict(method="central-clip")),
    ("dnc", dict(method="dnc")),
    ("distral", dict(method="distral")),
    ("distral2col", dict(method="distral2col")),
)

# `--small`: tiny networks and batches, a smoke run of a script (every script's), not a result
SMALL: dict[str, Any] = dict(num_envs=8, num_steps=8, num_minibatches=2, update_epochs=1,
                             hidden_sizes=(8,), kmeans_samples=200, eval_contexts=4)

# An extra row for tasks whose episodes end at a goal. Distral's regularised reward pays
# (1/beta)(alpha log pi_c - log pi_i) every step; at the default beta = 5 that outweighs the
# goal (the task scripts give the per-step figure), so its teachers learn to avoid the goal.
# This row gives Distral a beta that suits a reward scale of ~1 per episode.
# Distral 2-column's teachers get the same regularised reward, so the same row for it.
DISTRAL_BETA100 = ("distral-beta100", dict(method="distral", distral_beta=100.0))
DISTRAL2COL_BETA100 = ("distral2col-beta100", dict(method="distral2col", distral_beta=100.0))


def parse(argv: Sequence[str] | None, total_steps: int) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--total-steps", type=int, default=total_steps, help="env steps per run")
    p.add_argument("--seeds", type=int, default=5, help="seeds per method, vmapped")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--methods", default="", help="comma-separated row names (default: all)")
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--append", action="store_true",
                   help="add (or replace) these rows in an existing <out>/<task>.json")
    p.add_argument("--small", action="store_true",
                   help="tiny networks and batches: a smoke run of the script, not a result")
    return p.parse_args(argv)


def configs(task: str, base: dict[str, Any], a: argparse.Namespace,
            extra: Sequence[tuple[str, dict[str, Any]]] = (),
            points: int = CURVE_POINTS) -> list[tuple[str, Config]]:
    """The runs to train: (row name, config), the `RUNS` and a task's `extra` rows, each
    evaluated every `num_iterations // points` iterations (at least `points` times) and at
    the end."""
    wanted = [m.strip() for m in a.methods.split(",") if m.strip()]
    runs = tuple(RUNS) + tuple(extra)
    names = [n for n, _ in runs]
    unknown = [m for m in wanted if m not in names]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; valid: {names}")
    small = SMALL if a.small else {}
    out = []
    for name, changes in runs:
        if wanted and name not in wanted:
            continue
        kw = {**base, **changes, **small}
        if methods.get(changes["method"]).single_teacher:  # the whole space: one k-means "cell"
            kw.update(partitioner="kmeans", partitions=1)
        config = Config(task=task, total_steps=a.total_steps, seeds=a.seeds, seed=a.seed, **kw)
        every = max(1, config.num_iterations // points)
        out.append((name, config.replace(eval_every=every, log_every=min(every, 5))))
    return out


def row(name: str, config: Config, summary: Any, wall_s: float) -> dict[str, Any]:
    """One table row from a finished run's summary (per-seed values kept)."""
    f = summary.final
    per = lambda k: f.get(f"{k}_seeds", [f[k]])  # noqa: E731  (one seed: no _seeds key)
    central, teachers = np.asarray(per("central_greedy")), np.asarray(per("teachers_greedy"))
    is_ppo = not config.spec.has_central
    out = {"method": name, "config": config.to_dict(), "wall_s": wall_s,
           "compile_s": summary.compile_s, "train_s": summary.train_s,
           "steps_per_s": summary.steps_per_s}
    for k in ("central_greedy", "central_sampled", "teachers_greedy", "teachers_sampled"):
        m, lo, hi = mean_ci95(per(k))
        out[k], out[f"{k}_ci95"], out[f"{k}_seeds"] = m, [lo, hi], list(map(float, per(k)))
    # The gap per seed, then its mean and interval: the seeds pair central with teachers.
    m, lo, hi = mean_ci95(central - teachers)
    out["gap_diff"], out["gap_diff_ci95"] = (None, None) if is_ppo else (m, [lo, hi])
    if "kept" in f:  # the central policy's share of its teachers' return, from a random floor
        m, lo, hi = mean_ci95(per("kept"))
        out["kept"], out["kept_ci95"] = m, [lo, hi]
        out["kept_seeds"] = list(map(float, per("kept")))
        out["random_return"] = f["random_return"]
        # where a gap sits: KL and greedy-action gap per cell on (a) the teachers' greedy,
        # (b) their sampled and (c) the central policy's greedy states (mean over seeds)
        out["fit"] = {k: f[k] for k in f if k.startswith(("kl_", "action_gap_"))}
    positive = bool(np.all(central > 0) and np.all(teachers > 0))
    out["gap_ratio"] = float(np.mean(central / teachers)) if positive and not is_ppo else None
    out["curve"] = [_curve_point(r) for r in summary.history]
    return out


def _curve_point(record: dict[str, Any]) -> dict[str, Any]:
    """A learning-curve point from a training record: env steps, the teachers' training
    return (mean over partitions; per seed), and, where the record was evaluated, the
    held-out central return (mean; per seed). One seed: a one-element per-seed list."""
    teacher = float(np.mean(record["teacher_return"]))
    point = {"env_steps": record["env_steps"], "teacher_return": teacher,
             "teacher_return_seeds": np.asarray(record.get("teacher_return_seeds",
                                                           [teacher])).tolist()}
    if "central_return" in record:
        point["central_return"] = record["central_return"]
        point["central_return_seeds"] = record.get("central_return_seeds",
                                                   [record["central_return"]])
    return point


def _ci(m: float, ci: list[float] | None, digits: int) -> str:
    return f"{m:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def interval(values: Any, digits: int) -> str:
    """"mean [low, high]" of per-seed values (95% Student t)."""
    m, lo, hi = mean_ci95(values)
    return _ci(m, [lo, hi], digits)


def curve_mean(r: dict[str, Any]) -> tuple[float, float, float]:
    """Mean and 95% interval over seeds of each seed's mean held-out central return over the
    learning curve's evaluations: the area under the curve / its length, which tells apart
    runs that all saturate by the end of the budget."""
    per_seed = np.mean([p["central_return_seeds"] for p in r["curve"]
                        if "central_return_seeds" in p], axis=0)
    return mean_ci95(per_seed)


def table(task: str, rows: list[dict[str, Any]], command: str, digits: int) -> str:
    c = rows[0]["config"]
    evaluations = sum("central_return" in p for p in rows[0]["curve"])
    lines = [
        f"## {task}", "",
        f"{c['total_steps']:,} env steps per run, {c['seeds']} seeds (vmapped; seeds "
        f"{c['seed']}..{c['seed'] + c['seeds'] - 1}), {c['eval_contexts']} held-out contexts, "
        "mean over seeds with a 95% Student-t interval. Greedy actions unless marked; returns "
        f"at the end of the budget, except the curve mean (over the {evaluations} evaluations "
        f"during training). Command: `{command}`", "",
        "| method | central (held-out) | central, sampled actions | central, mean over the "
        "curve | teachers (own cells) | gap: central − teachers | gap: central ÷ teachers "
        "| env-steps/s | compile s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ppo = r["gap_diff"] is None
        m, lo, hi = curve_mean(r)
        lines.append(" | ".join([
            f"| {r['method']}", _ci(r["central_greedy"], r["central_greedy_ci95"], digits),
            _ci(r["central_sampled"], r["central_sampled_ci95"], digits), _ci(m, [lo, hi], digits),
            "—" if ppo else _ci(r["teachers_greedy"], r["teachers_greedy_ci95"], digits),
            "—" if ppo else _ci(r["gap_diff"], r["gap_diff_ci95"], digits),
            "—" if r["gap_ratio"] is None else f"{r['gap_ratio']:.2f}",
            f"{r['steps_per_s']:,.0f}", f"{r['compile_s']:.0f}", f"{r['wall_s']:.0f} |"]))
    return "\n".join(lines) + "\n"


def wall_clock(r: dict[str, Any], env_steps: Any) -> np.ndarray:
    """Seconds from the start of row `r`'s compilation to the point where its runs reached
    `env_steps` (per run): its compile time plus the env steps of all its seeds (one program)
    at its training throughput. Evaluation time is left out, and the throughput taken as
    constant over the run (the same program every iteration)."""
    seeds = r["config"]["seeds"]
    return r["compile_s"] + np.asarray(env_steps, np.float64) * seeds / r["steps_per_s"]


def plot(task: str, rows: list[dict[str, Any]], path: str) -> None:
    """Three panels: the central policy's held-out return against env steps and against
    wall-clock seconds (`wall_clock`), and the teachers' training return against env steps;
    each the mean over seeds with a 95% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_c, ax_w, ax_t) = plt.subplots(1, 3, figsize=(16, 4), sharey=True)
    for i, r in enumerate(rows):
        color = plt.get_cmap("tab10")(i)
        pts = [p for p in r["curve"] if "central_return" in p]
        steps = np.asarray([p["env_steps"] for p in pts])
        ci = np.asarray([mean_ci95(p["central_return_seeds"]) for p in pts])
        for ax, x in ((ax_c, steps / 1e6), (ax_w, wall_clock(r, steps))):
            ax.plot(x, ci[:, 0], color=color, label=r["method"])
            ax.fill_between(x, ci[:, 1], ci[:, 2], color=color, alpha=0.15)
        x_t = np.asarray([p["env_steps"] for p in r["curve"]]) / 1e6
        ci_t = np.asarray([mean_ci95(p["teacher_return_seeds"]) for p in r["curve"]])
        ax_t.plot(x_t, ci_t[:, 0], color=color, label=r["method"])
        ax_t.fill_between(x_t, ci_t[:, 1], ci_t[:, 2], color=color, alpha=0.15)
    ax_c.set(title=f"{task}: central policy, held-out (greedy)",
             xlabel="env steps per run (millions)", ylabel="return (mean, 95% band)")
    ax_w.set(title="the same against wall time",
             xlabel="s from the start of compilation (all seeds: one program)")
    ax_t.set(title="teachers' training return (ppo: its one policy)",
             xlabel="env steps per run (millions)")
    ax_t.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(task: str, argv: Sequence[str] | None = None, digits: int = 1,
         extra: Sequence[tuple[str, dict[str, Any]]] = (),
         total_steps: int = TABLE_STEPS, points: int = CURVE_POINTS) -> list[dict[str, Any]]:
    """Train every run of `task` with its preset's settings (`distillax.presets`, as
    `python -m distillax.train --preset <task>` but for the budget; `extra`: more (row name,
    config changes) after those of every table; `total_steps`: the default of
    `--total-steps`; `points`: evaluations per learning curve) and write
    `<out>/<task>.{json,md,png}`. Returns the rows."""
    base = presets.preset(task)
    base.pop("task")
    base.pop("total_steps")
    a = parse(argv, total_steps)
    # every config is validated by `train` before it compiles
    runs = configs(task, base, a, extra, points)
    command = shlex.join(["python", f"experiments/{script(task)}",
                          *(sys.argv[1:] if argv is None else argv)])
    rows = []
    for name, config in runs:
        t = time.perf_counter()
        _, summary = train(config, log=lambda line: None)
        rows.append(row(name, config, summary, time.perf_counter() - t))
        r = rows[-1]
        print(f"{task} {name}: central {_ci(r['central_greedy'], r['central_greedy_ci95'], digits)}"
              f", teachers {r['teachers_greedy']:.{digits}f}, {r['wall_s']:.0f} s", flush=True)
    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, task)
    result = {"task": task, "command": command, "digits": digits, "rows": rows}
    if a.append and os.path.exists(stem + ".json"):
        with open(stem + ".json") as f:
            result = merge(json.load(f), result, [n for n, _ in (*RUNS, *extra)])
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    print(render(stem))
    return rows


def merge(old: dict[str, Any], new: dict[str, Any], order: Sequence[str]) -> dict[str, Any]:
    """`old` results with `new`'s rows added or replacing those of the same name, in table
    `order`; the commands of both are kept (joined by `&&`, in the order they ran)."""
    rows = {r["method"]: r for r in old["rows"]} | {r["method"]: r for r in new["rows"]}
    return {**new, "command": old["command"] + " && " + new["command"],
            "rows": [rows[n] for n in order if n in rows]}


def render(stem: str) -> str:
    """Write `<stem>.md` and `<stem>.png` from `<stem>.json`; returns the table."""
    with open(stem + ".json") as f:
        result = json.load(f)
    task = result["task"]
    md = table(task, result["rows"], result["command"], result.get("digits", 1))
    with open(stem + ".md", "w") as f:
        f.write(md + f"\n![learning curves]({task}.png)\n")
    plot(task, result["rows"], stem + ".png")
    return md


def summary(results: Sequence[dict[str, Any]]) -> str:
    """One table over tasks: each run's central held-out return [95% interval] and, in
    brackets after a slash, its teachers' (own cells)."""
    names = [n for n, _ in RUNS] + [r["method"] for res in results for r in res["rows"]
                                    if r["method"] not in dict(RUNS)]
    names = list(dict.fromkeys(names))
    lines = ["| method | " + " | ".join(res["task"] for res in results) + " |",
             "|---|" + "---|" * len(results)]
    for n in names:
        cells = []
        for res in results:
            r = {x["method"]: x for x in res["rows"]}.get(n)
            d = res.get("digits", 1)
            cell = "" if r is None else _ci(r["central_greedy"], r["central_greedy_ci95"], d)
            if r is not None and r["gap_diff"] is not None:
                cell += f" / {r['teachers_greedy']:.{d}f}"
            cells.append(cell)
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # re-render tables, plots and the summary from the JSON results
    found = []
    for t in sys.argv[1:] or TABLES:
        if os.path.exists(os.path.join(RESULTS, t + ".json")):
            print(render(os.path.join(RESULTS, t)))
            with open(os.path.join(RESULTS, t + ".json")) as f:
                found.append(json.load(f))
    print(summary(found))
