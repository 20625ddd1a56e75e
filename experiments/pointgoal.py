"""PointGoal (a point mass must reach a goal on a ring; the goal angle is the context;
continuous actions), the miniature of DnC's "Ant position": every method, 5 seeds, 1M env
steps per run. Teachers are context-blind, so each has to find the goals of its own arc.

    .venv/bin/python experiments/pointgoal.py     # ~5 min on a 2-core CPU

Writes experiments/results/pointgoal.{json,md,png}. `--help` lists the options.
"""

from harness import main

BASE: dict = {}  # distillax's defaults: 4 k-means cells (90-degree arcs)

# Distral's regularised reward pays (1/beta)(alpha log pi_c - log pi_i) per step: at beta = 5,
# for 2-D Gaussians of unit std, about +0.28 per step, more than the dense cost (at most
# -0.1 per step near the ring), so teachers that stay out of the goal's reach collect more;
# with the default beta they learn to avoid the goal. The extra row gives Distral a beta that
# suits this reward scale.
EXTRA = [("distral-beta100", dict(method="distral", distral_beta=100.0))]

if __name__ == "__main__":
    main("pointgoal", BASE, total_steps=1_000_000, digits=2, extra=EXTRA)
