"""`python -m distillax.evaluate CHECKPOINT_DIR`: restore a run, evaluate it over the context
space, and write a table and plots.

    python -m distillax.evaluate runs/a [--out runs/a/eval] [--contexts 512] [--resolution 11]

Restores the checkpoint in this (fresh) process with `checkpoint.restore_policies`, on one
device whatever layout saved it, and runs one episode per context for the central policy and
for every teacher, all from the same reset keys, so every policy meets the same initial states:

- a grid covering the whole context space (every value of each discrete dimension, an evenly
  spaced grid over the continuous ones; every task of a task set): overall statistics, per
  partition (central vs the partition's own teacher), and every teacher on every partition's
  contexts;
- 2-D slices (each pair of continuous dimensions, the others at the middle of their range,
  one row per combination of discrete values) drawn as heatmaps, and 1-D slices drawn as lines.

Writes into --out (default CHECKPOINT_DIR/eval): eval.json, eval.md, returns_<a>_<b>.png,
returns_1d.png (or returns_tasks.png) and learning_curves.png from the run's metrics.jsonl;
with --video K, videos/video_<i>.gif (`distillax.render`).
Plots use matplotlib's Agg canvas directly (no pyplot, no global backend switch).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import sys
import time
import warnings
from typing import Any

import jax
import numpy as np

from distillax import limits, logs
from distillax.checkpoint import CheckpointError, cli_notes
from distillax.cli import OneLineParser
from distillax.config import Config, ConfigError
from distillax.contexts import ContextSpace
from distillax.evaluation import grid_returns
from distillax.model import Model
from distillax.paths import check_output_dir, removing_unused
from distillax.policy import load

# Above this many env steps an evaluation notes its size before it starts (its one program
# call shows no progress): on the 2-core CPU cartpole's episodes run ~1e6 env steps/s
# (`--contexts 100000`: 2.3e8 steps in 235 s of episodes, 247 s for the whole command),
# brax tasks 20-50x slower.
LONG_STEPS = 1e8

# --- contexts ------------------------------------------------------------------------------


def _split_dims(space: ContextSpace) -> tuple[list[int], list[int], list[tuple[float, ...]]]:
    """(continuous dims, discrete dims, every combination of the discrete dims' values)."""
    cont = [k for k in range(space.dim) if space.values[k] is None]
    disc = [k for k in range(space.dim) if space.values[k] is not None]
    combos = list(itertools.product(*[space.values[k] for k in disc])) or [()]
    return cont, disc, combos


def _middle(space: ContextSpace) -> np.ndarray:
    """The centre of the space `[d]`: mid-range (a discrete dim's entry is overwritten)."""
    return (np.asarray(space.low, np.float32) + np.asarray(space.high, np.float32)) / 2


def grid_contexts(space: ContextSpace, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """About `n` contexts on a regular grid over the whole space: `[N, d]`, and its shape.

    Task sets: every task once. Products: every combination of discrete values times a grid
    of k points (bounds included) per continuous dimension, k = the largest with N <= n
    (at least 2).
    """
    if space.tasks is not None:
        return np.asarray(space.tasks, np.float32), {"tasks": len(space.tasks)}
    cont, disc, combos = _split_dims(space)
    k = _grid_points(n, len(cont), len(combos))
    axes = {space.names[j]: np.linspace(space.low[j], space.high[j], k) for j in cont}
    rows = []
    for combo in combos:
        for point in itertools.product(*axes.values()):
            c = _middle(space)
            c[cont] = point
            c[disc] = combo
            rows.append(c)
    shape = {space.names[j]: k for j in cont} | {space.names[j]: len(space.values[j])
                                                  for j in disc}
    return np.asarray(rows, np.float32), shape


def _grid_points(n: int, continuous: int, combos: int) -> int:
    """k, the grid's points per continuous dimension: the largest with combos x k^continuous
    <= n, at least 2 (1 without continuous dimensions)."""
    return max(2, int(math.floor((n / combos) ** (1 / continuous) + 1e-9))) if continuous else 1


def context_counts(space: ContextSpace, contexts: int, resolution: int) -> tuple[int, int]:
    """(grid contexts, slice contexts) that `grid_contexts(space, contexts)`, `slices_2d(space,
    resolution)` and `slices_1d(space, 2 resolution - 1)` make, counted without making them."""
    if space.tasks is not None:
        return len(space.tasks), 0
    cont, _, combos = _split_dims(space)
    c, n = len(cont), len(combos)
    return (n * _grid_points(contexts, c, n) ** c,
            n * (c * (c - 1) // 2 * resolution**2 + c * (2 * resolution - 1)))


@dataclasses.dataclass(frozen=True)
class Slice2D:
    """Contexts `[combos, res_b, res_a, d]` over dims a (x axis) and b (y axis)."""

    a: int
    b: int
    xs: np.ndarray  # [res] values of dim a
    ys: np.ndarray  # [res] values of dim b
    combos: list[tuple[float, ...]]
    contexts: np.ndarray


def slices_2d(space: ContextSpace, res: int) -> list[Slice2D]:
    """One slice per pair of continuous dims; the other continuous dims at mid-range."""
    cont, disc, combos = _split_dims(space)
    out = []
    for a, b in itertools.combinations(cont, 2):
        xs = np.linspace(space.low[a], space.high[a], res, dtype=np.float32)
        ys = np.linspace(space.low[b], space.high[b], res, dtype=np.float32)
        c = np.broadcast_to(_middle(space), (len(combos), res, res, space.dim)).copy()
        c[..., a] = xs[None, None, :]
        c[..., b] = ys[None, :, None]
        for i, combo in enumerate(combos):
            c[i][..., disc] = np.asarray(combo, np.float32)
        out.append(Slice2D(a, b, xs, ys, combos, c))
    return out


def slices_1d(space: ContextSpace, res: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(dim, values `[res]`, contexts `[combos, res, d]`) per continuous dim."""
    cont, disc, combos = _split_dims(space)
    out = []
    for a in cont:
        xs = np.linspace(space.low[a], space.high[a], res, dtype=np.float32)
        c = np.broadcast_to(_middle(space), (len(combos), res, space.dim)).copy()
        c[..., a] = xs[None, :]
        for i, combo in enumerate(combos):
            c[i][:, disc] = np.asarray(combo, np.float32)
        out.append((a, xs, c))
    return out


def _stats(r: np.ndarray) -> dict[str, float]:
    return {"mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()),
            "median": float(np.median(r)), "max": float(r.max())}


def _fmt(x: float) -> str:
    return f"{x:.1f}"


# --- report --------------------------------------------------------------------------------


def _check_sizes(config: Config, contexts: int, resolution: int, videos: int) -> None:
    """Refuse (`ConfigError`) an evaluation whose episodes or videos cannot fit this
    machine's memory, or more videos than grid contexts; note one of over `LONG_STEPS` env
    steps. Builds the env (cached) but nothing else."""
    from distillax import envs

    env = envs.build(config)
    grid, sliced = context_counts(env.space, contexts, resolution)
    name, value = ("--contexts", contexts) if grid >= sliced else ("--resolution", resolution)
    policies = config.partitions + 1
    limits.require_fits(limits.evaluation(
        config, env, (grid + sliced) * policies, name=name, value=value,
        what=f"{grid + sliced:,} contexts x {policies} policies"))
    work = (grid + sliced) * policies * env.max_steps
    if work > LONG_STEPS:
        warnings.warn(logs.Note(
            f"{name} {value}: {grid + sliced:,} contexts x {policies} policies x "
            f"up to {env.max_steps} steps = {work:.1e} env steps in one program call: minutes "
            "to hours"), stacklevel=2)
    if videos > grid:
        raise ConfigError(f"--video = {videos} is invalid: at most {grid}, the contexts of "
                          f"the evaluation grid (--contexts {contexts}), which the videos show")
    if videos:
        from distillax import render

        limits.require_fits(limits.Estimate(
            name="--video", value=videos, bytes=render.recording_bytes(env, videos),
            what=f"recording {videos} contexts x 2 policies"))


@removing_unused()  # `out` goes again if the evaluation stops before writing
def evaluate_checkpoint(directory: str, out: str | None = None, contexts: int = 512,
                        resolution: int = 11, step: int | None = None, greedy: bool = True,
                        seed: int = 0, plots: bool = True, seed_index: int | None = None,
                        member: int | None = None, videos: int = 0) -> dict[str, Any]:
    """Evaluate checkpoint `step` (default latest) of `directory`; write the table and plots
    into `out` (default `directory/eval`). Returns the report (what eval.json holds).

    `seed` seeds the episodes' initial states; `seed_index` picks the run s of a multi-seed
    checkpoint (config `seeds` > 1; default 0), `member` the member k of a sweep's (default 0).
    `videos` K > 0: also GIFs of the central policy beside the own teacher in K grid contexts
    spread over the partitions (`render.write_videos`), into `out/videos`.
    """
    t0 = time.perf_counter()
    from distillax.checkpoint import read_run

    stored = read_run(directory, step).config
    if stored.seeds > 1:
        seed_index = seed_index or 0
    if stored.sweep:
        member = member or 0
    out = out or os.path.join(directory, "eval")
    check_output_dir(out, "--out")  # before the restore and the episodes, not after them
    _check_sizes(stored, contexts, resolution, videos)
    info, model, policies = load(directory, step, seed_index, member)
    run_seeds = info.config.seeds
    t_restore = time.perf_counter() - t0
    config, space = info.config, model.env.space
    os.makedirs(out, exist_ok=True)

    grid, grid_shape = grid_contexts(space, contexts)
    s2 = slices_2d(space, resolution) if space.tasks is None else []
    s1 = slices_1d(space, 2 * resolution - 1) if space.tasks is None else []
    # One batch, one compiled program, for the grid and every slice.
    parts = [grid] + [s.contexts.reshape(-1, space.dim) for s in s2] + \
            [c.reshape(-1, space.dim) for _, _, c in s1]
    t1 = time.perf_counter()
    r = grid_returns(model, policies, np.concatenate(parts), jax.random.PRNGKey(seed), greedy)
    t_eval = time.perf_counter() - t1
    bounds = np.cumsum([0] + [len(p) for p in parts])
    piece = lambda i: {k: v[..., bounds[i]:bounds[i + 1]] for k, v in r.items()}  # noqa: E731

    g = piece(0)
    P = config.partitions
    weights = np.asarray(policies.partition.weights)
    centres = np.asarray(space.low) + np.asarray(policies.partition.centres) * (
        np.asarray(space.high) - np.asarray(space.low))
    per_partition, cross = [], []
    for j in range(P):
        m = g["cell"] == j
        per_partition.append({
            "partition": j, "weight": float(weights[j]), "contexts": int(m.sum()),
            "centre": dict(zip(space.names, centres[j].tolist())),
            "central": float(g["central"][m].mean()) if m.any() else None,
            "own_teacher": float(g["own"][m].mean()) if m.any() else None,
            # the central policy's fit to this teacher (evaluation.fit_watch), per step of
            # the teacher's own episodes here and of the central policy's
            **{f"{k}_{who}_states": (float(g[f"{w}_{k}"][m].sum() / g[f"{w}_steps"][m].sum())
                                     if m.any() and model.has_central else None)
               for k in ("kl", "action_gap") for who, w in (("teacher", "own"),
                                                            ("central", "central"))}})
        cross.append([float(g["teachers"][i][m].mean()) if m.any() else None for i in range(P)])
    best = int(np.argmax(g["teachers"].mean(axis=1)))
    report: dict[str, Any] = {
        "checkpoint": os.path.abspath(directory), "step": info.step,
        "iteration": info.meta.get("iteration"), "env_steps": info.meta.get("env_steps"),
        "task": config.task, "method": config.method, "partitions": P,
        "has_central": model.has_central, "actions": "greedy" if greedy else "sampled",
        "seed": seed, "seed_index": seed_index, "run_seeds": run_seeds, "member": member,
        "grid": {"contexts": int(len(grid)), "shape": grid_shape},
        "overall": {"central": _stats(g["central"]), "teachers_own_cell": _stats(g["own"]),
                    "best_single_teacher": {"teacher": best, **_stats(g["teachers"][best])}},
        "per_partition": per_partition,
        # cross[j][i]: teacher i's mean return on partition j's contexts.
        "teacher_on_partition": cross,
        "per_context": {"contexts": grid.tolist(), "central": g["central"].tolist(),
                        "own_teacher": g["own"].tolist(), "cell": g["cell"].tolist()},
        "config": config.to_dict(), "divergence": config.resolved_divergence,
        "timing_s": {"restore": t_restore, "evaluate": t_eval},
    }

    files = ["eval.json", "eval.md"]
    if plots:
        t2 = time.perf_counter()
        for i, s in enumerate(s2):
            files.append(_plot_heatmap(out, model, s, piece(1 + i), report))
        if s1:
            files.append(_plot_lines(out, space, s1, [piece(1 + len(s2) + i)
                                                      for i in range(len(s1))], report))
        if space.tasks is not None:
            files.append(_plot_tasks(out, space, grid, g, report))
        metrics = os.path.join(directory, "metrics.jsonl")
        if os.path.exists(metrics):
            f = _plot_learning_curves(out, logs.read_jsonl(metrics), report)
            if f:
                files.append(f)
        report["timing_s"]["plots"] = time.perf_counter() - t2
    if videos:
        from distillax import render  # Pillow: only when videos are asked for

        t3 = time.perf_counter()
        report["videos"] = render.write_videos(
            os.path.join(out, "videos"), model, policies,
            render.video_contexts(space, policies.partition, grid, videos),
            jax.random.PRNGKey(seed), greedy)
        files += [os.path.join("videos", v["file"]) for v in report["videos"]]
        report["timing_s"]["videos"] = time.perf_counter() - t3
    report["files"] = files
    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump(logs.to_python(report), f, indent=1)
    with open(os.path.join(out, "eval.md"), "w") as f:
        f.write(markdown(report, space))
    return report


def markdown(report: dict[str, Any], space: ContextSpace) -> str:
    """The report's tables as Markdown."""
    central_name = "central policy" if report["has_central"] else "ppo policy (no central)"
    lines = [
        f"# Evaluation of `{report['checkpoint']}`", "",
        f"Checkpoint at iteration {report['iteration']} ({report['env_steps']:,} env steps); "
        f"task `{report['task']}`, method `{report['method']}`, {report['partitions']} "
        f"partitions. One episode per context, {report['actions']} actions, the same initial "
        "states for every policy."
        + (f" Run {report['seed_index']} of the {report['run_seeds']} seeds in the checkpoint "
           f"(config seed + {report['seed_index']})." if report["run_seeds"] > 1 else ""), "",
        f"Grid: {report['grid']['contexts']} contexts covering the whole context space ("
        + " x ".join(f"{n} {k}" for k, n in report["grid"]["shape"].items()) + ").", "",
        "## Return over the whole context space", "",
        "| policy | mean | std | min | median | max |", "|---|---:|---:|---:|---:|---:|"]
    o = report["overall"]
    for name, s in ((central_name, o["central"]),
                    ("teachers, each in its own cell", o["teachers_own_cell"]),
                    (f"teacher {o['best_single_teacher']['teacher']} everywhere (best single)",
                     o["best_single_teacher"])):
        lines.append(f"| {name} | " + " | ".join(_fmt(s[k]) for k in
                                                   ("mean", "std", "min", "median", "max")) + " |")
    lines += ["", "## Per partition", "",
              "KL and gap: how the central policy follows the partition's teacher, per step "
              "of the teacher's episodes (teacher states) and of its own (central states): "
              "KL(teacher || central), and the distance between their greedy actions "
              "(discrete actions: how often they differ).", "",
              "| partition | weight | grid contexts | centre (" + ", ".join(space.names) +
              ") | central | own teacher | KL, teacher states | KL, central states | gap, "
              "teacher states | gap, central states |",
              "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for p in report["per_partition"]:
        centre = ", ".join(f"{v:.2f}" for v in p["centre"].values())
        cells = [_fmt(p[k]) if p[k] is not None else "-" for k in ("central", "own_teacher")]
        cells += [f"{p[k]:.3g}" if p.get(k) is not None else "-"
                  for k in ("kl_teacher_states", "kl_central_states",
                            "action_gap_teacher_states", "action_gap_central_states")]
        lines.append(f"| {p['partition']} | {p['weight']:.3f} | {p['contexts']} | {centre} | "
                     + " | ".join(cells) + " |")
    P = report["partitions"]
    lines += ["", "## Every teacher on every partition's contexts", "",
              "Mean return of teacher i (rows) on the grid contexts of partition j (columns); "
              "the diagonal is each teacher in its own cell.", "",
              "| teacher \\ partition | " + " | ".join(str(j) for j in range(P)) + " |",
              "|---:|" + "---:|" * P]
    cross = report["teacher_on_partition"]
    for i in range(P):
        cells = ["-" if cross[j][i] is None else _fmt(cross[j][i]) for j in range(P)]
        cells = [f"**{c}**" if j == i else c for j, c in enumerate(cells)]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    if report.get("files"):
        lines += ["", "## Plots", ""] + [f"![{f}]({f})" for f in report["files"]
                                         if f.endswith(".png")]
    return "\n".join(lines) + "\n"


# --- plots ---------------------------------------------------------------------------------


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _combo_label(space: ContextSpace, combo: tuple[float, ...]) -> str:
    disc = [k for k in range(space.dim) if space.values[k] is not None]
    return ", ".join(f"{space.names[k]} = {v:g}" for k, v in zip(disc, combo))


def _fixed_label(space: ContextSpace, free: tuple[int, ...]) -> str:
    mid = _middle(space)
    fixed = [k for k in range(space.dim) if space.values[k] is None and k not in free]
    return ", ".join(f"{space.names[k]} = {mid[k]:.3g}" for k in fixed)


def _draw_cells(ax, xs: np.ndarray, ys: np.ndarray, cell: np.ndarray) -> None:
    """Borders between pixels acted in by different teachers, and each teacher's index at the
    mean position of its pixels. `cell [len(ys), len(xs)]`."""
    from matplotlib.collections import LineCollection

    dx, dy = (xs[1] - xs[0]) / 2, (ys[1] - ys[0]) / 2
    segs = []
    for i, j in zip(*np.nonzero(cell[:, 1:] != cell[:, :-1])):  # vertical borders
        x = (xs[j] + xs[j + 1]) / 2
        segs.append([(x, ys[i] - dy), (x, ys[i] + dy)])
    for i, j in zip(*np.nonzero(cell[1:, :] != cell[:-1, :])):  # horizontal borders
        y = (ys[i] + ys[i + 1]) / 2
        segs.append([(xs[j] - dx, y), (xs[j] + dx, y)])
    ax.add_collection(LineCollection(segs, colors="white", linewidths=1.5))
    for t in np.unique(cell):
        yi, xi = np.nonzero(cell == t)
        ax.text(xs[xi].mean(), ys[yi].mean(), f"T{t}", color="white", fontsize=9,
                fontweight="bold", ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.15", fc="black", alpha=0.45, lw=0))


def _plot_heatmap(out: str, model: Model, s: Slice2D,
                  r: dict[str, np.ndarray], report: dict[str, Any]) -> str:
    space = model.env.space
    C, res = len(s.combos), len(s.xs)
    central = r["central"].reshape(C, res, res)
    own = r["own"].reshape(C, res, res)
    cell = r["cell"].reshape(C, res, res)
    lo, hi = min(central.min(), own.min()), max(central.max(), own.max())
    diff = central - own
    dmax = max(float(np.abs(diff).max()), 1e-6)
    # Pixel i is centred on xs[i] (half a step of margin on each side).
    dx, dy = (s.xs[1] - s.xs[0]) / 2, (s.ys[1] - s.ys[0]) / 2
    extent = (s.xs[0] - dx, s.xs[-1] + dx, s.ys[0] - dy, s.ys[-1] + dy)
    fig = _figure(12, 3.4 * C + 0.6)
    axes = fig.subplots(C, 3, squeeze=False)
    cname = "central" if model.has_central else "ppo policy"
    for i in range(C):
        row = _combo_label(space, s.combos[i])
        for j, (img, title, kw) in enumerate((
                (central[i], cname, dict(cmap="viridis", vmin=lo, vmax=hi)),
                (own[i], "teachers (own cell)", dict(cmap="viridis", vmin=lo, vmax=hi)),
                (diff[i], f"{cname} - teachers", dict(cmap="RdBu", vmin=-dmax, vmax=dmax)))):
            ax = axes[i, j]
            im = ax.imshow(img, origin="lower", extent=extent, aspect="auto",
                           interpolation="nearest", **kw)
            if j == 1 and report["partitions"] > 1:
                _draw_cells(ax, s.xs, s.ys, cell[i])
            ax.set_title(f"{title}" + (f"\n{row}" if row else ""), fontsize=9)
            ax.set_xlabel(space.names[s.a])
            ax.set_ylabel(space.names[s.b])
            fig.colorbar(im, ax=ax, label="return" if j < 2 else "difference")
    fixed = _fixed_label(space, (s.a, s.b))
    fig.suptitle(f"{report['task']} / {report['method']}: episode return over "
                 f"{space.names[s.a]} x {space.names[s.b]}" + (f" ({fixed})" if fixed else "")
                 + f", iteration {report['iteration']}; Ti: the teacher acting there",
                 fontsize=10)
    name = f"returns_{space.names[s.a]}_{space.names[s.b]}.png"
    fig.savefig(os.path.join(out, name))
    return name


def _plot_lines(out: str, space: ContextSpace, s1: list, rs: list[dict[str, np.ndarray]],
                report: dict[str, Any]) -> str:
    fig = _figure(4.2 * len(s1), 3.6)
    axes = fig.subplots(1, len(s1), squeeze=False)[0]
    _, _, combos = _split_dims(space)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for ax, (a, xs, _), r in zip(axes, s1, rs):
        C = len(combos)
        central, own = r["central"].reshape(C, -1), r["own"].reshape(C, -1)
        for i, combo in enumerate(combos):
            label = _combo_label(space, combo)
            col = colors[i % len(colors)]
            ax.plot(xs, central[i], color=col, lw=2,
                    label=("central" if report["has_central"] else "ppo") +
                    (f", {label}" if label else ""))
            ax.plot(xs, own[i], color=col, lw=1.2, ls="--",
                    label="teachers" + (f", {label}" if label else ""))
        ax.set_xlabel(space.names[a])
        ax.set_ylabel("return")
        fixed = _fixed_label(space, (a,))
        ax.set_title(fixed, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{report['task']} / {report['method']}: return along each context dimension "
                 f"(others at mid-range), iteration {report['iteration']}", fontsize=10)
    fig.savefig(os.path.join(out, "returns_1d.png"))
    return "returns_1d.png"


def _plot_tasks(out: str, space: ContextSpace, grid: np.ndarray, g: dict[str, np.ndarray],
                report: dict[str, Any]) -> str:
    fig = _figure(max(5.0, 0.6 * len(grid) + 2), 3.6)
    ax = fig.subplots()
    x = np.arange(len(grid))
    ax.bar(x - 0.2, g["central"], 0.4, label="central" if report["has_central"] else "ppo")
    ax.bar(x + 0.2, g["own"], 0.4, label="teacher of the task")
    ax.set_xticks(x, [f"{i}: (" + ", ".join(f"{v:g}" for v in c) + ")"
                      for i, c in enumerate(grid)], rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("task: (" + ", ".join(space.names) + ")")
    ax.set_ylabel("return")
    ax.legend(fontsize=8)
    ax.set_title(f"{report['task']} / {report['method']}: return per task, iteration "
                 f"{report['iteration']}", fontsize=10)
    fig.savefig(os.path.join(out, "returns_tasks.png"))
    return "returns_tasks.png"


def _plot_learning_curves(out: str, records: list[dict[str, Any]],
                          report: dict[str, Any]) -> str | None:
    """Returns (teachers in training, central held-out), distillation and PPO diagnostics
    against env steps; a panel is drawn for each quantity the records hold."""
    if not records:
        return None
    x = np.asarray([r["env_steps"] for r in records], float)

    def series(key: str) -> np.ndarray | None:
        if not any(key in r for r in records):
            return None
        vals = [r.get(key) for r in records]
        width = max(len(np.atleast_1d(v)) for v in vals if v is not None)
        return np.asarray([np.full(width, np.nan) if v is None else
                           np.atleast_1d(np.asarray(v, float)) for v in vals])

    divergence = {"kl": "KL(teacher || central)", "nll": "NLL of the teacher's action",
                  "mse": "MSE of logits / means"}
    d = divergence.get(report.get("divergence", ""), "")
    panels = [("return", ["teacher_return", "central_return"]),
              (f"distillation loss ({d})" if d else "distillation loss", ["distill_loss"]),
              ("coupling term (the method's; see README) / central log-ratio",
               ["couple", "central_log_ratio"]),
              ("teacher entropy", ["entropy"]), ("PPO approx KL", ["approx_kl"]),
              ("total loss", ["loss"])]
    panels = [(t, [k for k in ks if series(k) is not None]) for t, ks in panels]
    panels = [(t, ks) for t, ks in panels if ks]
    cols = 3 if len(panels) > 4 else 2
    rows = math.ceil(len(panels) / cols)
    fig = _figure(4.3 * cols, 3.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (title, keys) in zip(axes, panels):
        for k in keys:
            y = series(k)
            if k == "central_return":
                m = np.isfinite(y[:, 0])
                ax.plot(x[m], y[m, 0], "k-o", ms=2.5, lw=1.8, label="central (held-out, greedy)")
            elif y.shape[1] == 1:
                ax.plot(x, y[:, 0], lw=1.2, label=k)
            else:
                for i in range(y.shape[1]):
                    ax.plot(x, y[:, i], lw=0.9, alpha=0.8,
                            label=f"{k.replace('_', ' ')} {i}" if y.shape[1] <= 8 else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{report['task']} / {report['method']}: learning curves", fontsize=10)
    fig.savefig(os.path.join(out, "learning_curves.png"))
    return "learning_curves.png"


# --- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m distillax.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint_dir", metavar="CHECKPOINT_DIR")
    p.add_argument("--out", default=None, help="output directory (default CHECKPOINT_DIR/eval)")
    p.add_argument("--contexts", type=int, default=512,
                   help="about this many grid contexts over the whole space (default 512)")
    p.add_argument("--resolution", type=int, default=11,
                   help="points per axis of the 2-D slices (default 11)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--sampled", action="store_true",
                   help="sample actions instead of the greedy mode")
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes' initial states")
    p.add_argument("--seed-index", type=int, default=None, metavar="S",
                   help="which run of a multi-seed checkpoint (config seeds > 1) to evaluate: "
                        "0..seeds-1, the run of config seed + S (default 0)")
    p.add_argument("--member", type=int, default=None, metavar="K",
                   help="which member of a sweep's checkpoint (config sweep) to evaluate: "
                        "0..K-1 in the order of the grid (default 0)")
    p.add_argument("--video", type=int, default=None, metavar="K",
                   help="also write K GIFs (OUT/videos/video_<i>.gif): the central policy "
                        "beside each context's own teacher, in K grid contexts spread over "
                        "the partitions, from the same initial state (default: none)")
    args = p.parse_args(argv)
    for name in ("contexts", "resolution"):
        if getattr(args, name) < 2:
            print(f"error: --{name} = {getattr(args, name)} is invalid: an integer >= 2",
                  file=sys.stderr)
            return 2
    if args.video is not None and args.video < 1:
        print(f"error: --video = {args.video} is invalid: a number of videos >= 1",
              file=sys.stderr)
        return 2
    if not 0 <= args.seed < 2**31:  # jax.random.PRNGKey overflows past 2**63, after the restore
        print(f"error: --seed = {args.seed} is invalid: an integer in [0, 2**31) (as config "
              "`seed`)", file=sys.stderr)
        return 2
    try:
        t = time.perf_counter()
        with cli_notes():
            rep = evaluate_checkpoint(args.checkpoint_dir, args.out, args.contexts,
                                      args.resolution, args.step, not args.sampled, args.seed,
                                      seed_index=args.seed_index, member=args.member,
                                      videos=args.video or 0)
    except (CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or os.path.join(args.checkpoint_dir, "eval")
    o = rep["overall"]
    print(f"evaluated {args.checkpoint_dir} at iteration {rep['iteration']} on "
          f"{rep['grid']['contexts']} grid contexts in {time.perf_counter() - t:.1f} s "
          f"(restore {rep['timing_s']['restore']:.1f} s, episodes "
          f"{rep['timing_s']['evaluate']:.1f} s)")
    print(f"  central mean return {o['central']['mean']:.1f}; teachers in their own cells "
          f"{o['teachers_own_cell']['mean']:.1f}; best single teacher "
          f"{o['best_single_teacher']['mean']:.1f}")
    files = [f for f in rep["files"] if not f.startswith("videos")]
    videos = len(rep["files"]) - len(files)
    print(f"  wrote {', '.join(files)}" + (f" and {videos} GIFs in videos/" if videos else "")
          + f" to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
