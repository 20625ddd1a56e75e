"""Reporting: what a run and an evaluation write and print, in one place for `run` and the
`evaluate` command.

- a run's final report (`final_lines`), its results.json (`write_json`), and a sweep's
  table and figure (`sweep_table`, `sweep_files`);
- a checkpoint's evaluation over the whole context space (`evaluate_checkpoint`): the grid
  and slices of `evaluation`, played by every policy from the same initial states, written
  as eval.json, eval.md (`markdown`), heatmaps, lines or bars, learning curves from the run's
  metrics.jsonl, and videos (`render`).

Plots use matplotlib's Agg canvas directly (no pyplot, no global backend switch).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from typing import Any

import jax
import numpy as np

from distillax import limits, logs
from distillax.config import Config, ConfigError
from distillax.contexts import ContextSpace
from distillax.evaluation import (
    FIT_STATES,
    Slice2D,
    context_counts,
    grid_contexts,
    grid_returns,
    middle,
    slices_1d,
    slices_2d,
    split_dims,
)
from distillax.model import Model
from distillax.paths import check_output_dir, removing_unused
from distillax.policy import policy_name

# Above this many env steps an evaluation notes its size before it starts (its one program
# call shows no progress): on the 2-core CPU cartpole's episodes run ~1e6 env steps/s
# (`--contexts 100000`: 2.3e8 steps in 235 s of episodes, 247 s for the whole command),
# brax tasks 20-50x slower.
LONG_STEPS = 1e8


# --- a run's final report ------------------------------------------------------------------


def write_json(path: str, obj: Any) -> None:
    logs.write_atomic(path, json.dumps(logs.to_python(obj), indent=2, sort_keys=True))


def final_lines(final: dict[str, Any], model: Model, config: Config) -> list[str]:
    """What a finished run prints: the central policy's and the teachers' held-out returns,
    how much of them it keeps and its fit per cell, and the seeds' or the sweep's table."""
    who = "central policy" if model.has_central else f"{config.method} policy (no central)"
    lines = [f"{who} held-out return over {final['contexts']} contexts: "
             f"{final['central_greedy']:.1f} greedy, {final['central_sampled']:.1f} sampled",
             f"teachers (each in its own cell) held-out return: {final['teachers_greedy']:.1f} "
             f"greedy, {final['teachers_sampled']:.1f} sampled"]
    if "kept" in final:
        lines.append(f"the central policy keeps {final['kept']:.2f} of its teachers' return "
                     f"(greedy; 0 = a random policy's {final['random_return']:.1f}); per cell, "
                     "on the states of")
        cells = lambda v: "[" + " ".join(f"{x:.3g}" for x in v) + "]"  # noqa: E731
        lines += [f"  {name.replace('_', ' ')} episodes: KL(teacher || central) "
                  f"{cells(final[f'kl_{name}'])}, greedy-action gap "
                  f"{cells(final[f'action_gap_{name}'])}" for name, _, _ in FIT_STATES]
    if config.sweep:
        lines.append(sweep_table(config, final))
    elif config.seeds > 1:
        for k in ("central_greedy", "teachers_greedy"):
            lo, hi = final[f"{k}_ci95"]
            seeds = " ".join(f"{v:.1f}" for v in final[f"{k}_seeds"])
            lines.append(f"{k} over {config.seeds} seeds: mean {final[k]:.1f}, 95% interval "
                         f"[{lo:.1f}, {hi:.1f}] (Student t); per seed: {seeds}")
    return lines


def sweep_table(config: Config, final: dict[str, Any]) -> str:
    """The members of a sweep's final report as a Markdown table: the swept values, then the
    central and teachers' held-out returns (greedy) with 95% intervals over seeds."""
    names = [name for name, _ in config.sweep]
    interval = config.seeds > 1

    def cell(m: dict[str, Any], k: str) -> str:
        if not interval:
            return f"{m[k]:.2f}"
        lo, hi = m[f"{k}_ci95"]
        return f"{m[k]:.2f} [{lo:.2f}, {hi:.2f}]"

    lines = ["| member | " + " | ".join(names) + " | central held-out | teachers (own cells) |",
             "|---|" + "---|" * len(names) + "---|---|"]
    for m in final["members"]:
        lines.append(f"| {m['member']} | " + " | ".join(f"{m['values'][n]:g}" for n in names)
                     + f" | {cell(m, 'central_greedy')} | {cell(m, 'teachers_greedy')} |")
    seeds = f"mean [95% Student-t interval] over {config.seeds} seeds" if interval else "one seed"
    return (f"sweep of {len(config.members)} members ({seeds}; greedy actions, "
            f"{final['contexts']} held-out contexts):\n" + "\n".join(lines))


def sweep_files(directory: str, config: Config, final: dict[str, Any]) -> None:
    """`sweep.md` (`sweep_table`) and `sweep.png`: held-out return against each swept value
    (one line per combination of the others' values), with the seeds' 95% intervals."""
    logs.write_atomic(os.path.join(directory, "sweep.md"), sweep_table(config, final) + "\n")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [name for name, _ in config.sweep]
    fig = Figure(figsize=(4.5 * len(names), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    members = final["members"]
    for ax, name in zip(axes, names):
        others = [n for n in names if n != name]
        keys = sorted({tuple(m["values"][o] for o in others) for m in members})
        for key in keys:
            row = sorted((m for m in members
                          if tuple(m["values"][o] for o in others) == key),
                         key=lambda m: m["values"][name])
            x = [m["values"][name] for m in row]
            y = [m["central_greedy"] for m in row]
            label = ", ".join(f"{o}={v:g}" for o, v in zip(others, key)) or "central"
            ax.plot(x, y, "o-", label=label)
            if config.seeds > 1:
                lo = [m["central_greedy_ci95"][0] for m in row]
                hi = [m["central_greedy_ci95"][1] for m in row]
                ax.fill_between(x, lo, hi, alpha=0.2)
        if min(v for _, vs in config.sweep if _ == name for v in vs) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("central held-out return (greedy)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{config.task} / {config.method}: sweep", fontsize=10)
    fig.savefig(os.path.join(directory, "sweep.png"), dpi=110)


# --- a checkpoint's evaluation over the context space ---------------------------------------


def _stats(r: np.ndarray) -> dict[str, float]:
    return {"mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()),
            "median": float(np.median(r)), "max": float(r.max())}


def _fmt(x: float) -> str:
    return f"{x:.1f}"



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
    from distillax.checkpoint import load, read_run  # orbax: only when a checkpoint is read

    t0 = time.perf_counter()
    stored = read_run(directory, step).config
    if stored.seeds > 1:
        seed_index = seed_index or 0
    if stored.sweep:
        member = member or 0
    out = out or os.path.join(directory, "eval")
    check_output_dir(out, "--out")  # before the restore and the episodes, not after them
    _check_sizes(stored, contexts, resolution, videos)
    info, model, policies = load(directory, step, seed_index, member)
    t_restore = time.perf_counter() - t0
    os.makedirs(out, exist_ok=True)
    space = model.env.space
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
    pieces = [{k: v[..., bounds[i]:bounds[i + 1]] for k, v in r.items()}
              for i in range(len(parts))]
    report = {
        "checkpoint": os.path.abspath(directory), "step": info.step,
        "iteration": info.meta.get("iteration"), "env_steps": info.meta.get("env_steps"),
        "task": info.config.task, "method": info.config.method,
        "partitions": info.config.partitions, "has_central": model.has_central,
        "actions": "greedy" if greedy else "sampled", "seed": seed, "seed_index": seed_index,
        "run_seeds": info.config.seeds, "member": member,
        "grid": {"contexts": int(len(grid)), "shape": grid_shape},
        **grid_tables(model, policies, grid, pieces[0]),
        "config": info.config.to_dict(), "divergence": info.config.resolved_divergence,
        "timing_s": {"restore": t_restore, "evaluate": t_eval},
    }
    files = ["eval.json", "eval.md"]
    if plots:
        files += _plots(out, directory, model, report, grid, s2, s1, pieces)
    if videos:
        files += _videos(out, model, policies, grid, videos, seed, greedy, report)
    report["files"] = files
    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump(logs.to_python(report), f, indent=1)
    with open(os.path.join(out, "eval.md"), "w") as f:
        f.write(markdown(report, space))
    return report


def grid_tables(model: Model, policies: Any, grid: np.ndarray,
                g: dict[str, np.ndarray]) -> dict[str, Any]:
    """The report's numbers from the grid's episodes `g` (`evaluation.grid_returns` on
    `grid [N, d]`): overall statistics, per partition (central vs its own teacher, and the
    central policy's fit to it), every teacher on every partition, and per context."""
    space, P = model.env.space, model.config.partitions
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
    return {
        "overall": {"central": _stats(g["central"]), "teachers_own_cell": _stats(g["own"]),
                    "best_single_teacher": {"teacher": best, **_stats(g["teachers"][best])}},
        "per_partition": per_partition,
        # cross[j][i]: teacher i's mean return on partition j's contexts.
        "teacher_on_partition": cross,
        "per_context": {"contexts": grid.tolist(), "central": g["central"].tolist(),
                        "own_teacher": g["own"].tolist(), "cell": g["cell"].tolist()},
    }


def _plots(out: str, directory: str, model: Model, report: dict[str, Any], grid: np.ndarray,
           s2: list[Slice2D], s1: list, pieces: list[dict[str, np.ndarray]]) -> list[str]:
    """The figures of an evaluation (`pieces`: the grid's episodes, then each 2-D slice's,
    then each 1-D slice's); returns the files written into `out`."""
    t = time.perf_counter()
    space = model.env.space
    files = [_plot_heatmap(out, model, s, pieces[1 + i], report) for i, s in enumerate(s2)]
    if s1:
        files.append(_plot_lines(out, space, s1, pieces[1 + len(s2):], report))
    if space.tasks is not None:
        files.append(_plot_tasks(out, space, grid, pieces[0], report))
    metrics = os.path.join(directory, "metrics.jsonl")
    if os.path.exists(metrics):
        f = _plot_learning_curves(out, logs.read_jsonl(metrics), report)
        if f:
            files.append(f)
    report["timing_s"]["plots"] = time.perf_counter() - t
    return files


def _videos(out: str, model: Model, policies: Any, grid: np.ndarray, videos: int, seed: int,
            greedy: bool, report: dict[str, Any]) -> list[str]:
    """`videos` GIFs in grid contexts spread over the partitions, into `out/videos`."""
    from distillax import render  # Pillow: only when videos are asked for

    t = time.perf_counter()
    report["videos"] = render.write_videos(
        os.path.join(out, "videos"), model, policies,
        render.video_contexts(model.env.space, policies.partition, grid, videos),
        jax.random.PRNGKey(seed), greedy)
    report["timing_s"]["videos"] = time.perf_counter() - t
    return [os.path.join("videos", v["file"]) for v in report["videos"]]


def markdown(report: dict[str, Any], space: ContextSpace) -> str:
    """The report's tables as Markdown."""
    central_name = ("central policy" if report["has_central"]
                    else f"{report['method']} policy (no central)")
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
    mid = middle(space)
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
    cname = policy_name(model.has_central, model.config.method)
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
    _, _, combos = split_dims(space)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for ax, (a, xs, _), r in zip(axes, s1, rs):
        C = len(combos)
        central, own = r["central"].reshape(C, -1), r["own"].reshape(C, -1)
        for i, combo in enumerate(combos):
            label = _combo_label(space, combo)
            col = colors[i % len(colors)]
            ax.plot(xs, central[i], color=col, lw=2,
                    label=policy_name(report["has_central"], report["method"]) +
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
    ax.bar(x - 0.2, g["central"], 0.4, label=policy_name(report["has_central"], report["method"]))
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

