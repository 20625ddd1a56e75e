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
with --video K, videos/video_<i>.gif (`distillax.render`). This module is the command line
only: the evaluation and its files are `reporting.evaluate_checkpoint`'s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from distillax.checkpoint import CheckpointError, cli_notes
from distillax.cli import OneLineParser
from distillax.config import ConfigError
from distillax.reporting import evaluate_checkpoint


def _invalid(args: argparse.Namespace) -> str | None:
    """Why the arguments cannot be evaluated, before anything is read (None: they can)."""
    for name in ("contexts", "resolution"):
        if getattr(args, name) < 2:
            return f"--{name} = {getattr(args, name)} is invalid: an integer >= 2"
    if args.video is not None and args.video < 1:
        return f"--video = {args.video} is invalid: a number of videos >= 1"
    if not 0 <= args.seed < 2**31:  # jax.random.PRNGKey overflows past 2**63, after the restore
        return (f"--seed = {args.seed} is invalid: an integer in [0, 2**31) (as config "
                "`seed`)")
    return None


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
    why = _invalid(args)
    if why:
        print(f"error: {why}", file=sys.stderr)
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
