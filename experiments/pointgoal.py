"""PointGoal (a point mass must reach a goal on a ring; the goal angle is the context;
continuous actions), the miniature of DnC's "Ant position": every method, 5 seeds, 1M env
steps per run. Teachers are context-blind, so each has to find the goals of its own arc.

    .venv/bin/python experiments/pointgoal.py     # ~5 min on a 2-core CPU

Writes experiments/results/pointgoal.{json,md,png}. `--help` lists the options.
"""

from harness import main

BASE: dict = {}  # distillax's defaults: 4 k-means cells (90-degree arcs)

if __name__ == "__main__":
    main("pointgoal", BASE, total_steps=1_000_000, digits=2)
