"""PointGoal (a point mass must reach a goal on a ring; the goal angle is the context;
continuous actions), the miniature of DnC's "Ant position": every method, 5 seeds, 500k env
steps per run (`harness.TABLE_STEPS`). Teachers are context-blind, so each has to find the
goals of its own arc.

    .venv/bin/python experiments/pointgoal.py    # the time it takes: experiments/results/README.md

Writes experiments/results/pointgoal.{json,md,png}. `--help` lists the options.
"""

from harness import DISTRAL2COL_BETA100, DISTRAL_BETA100, main

# At beta = 5, for 2-D Gaussians of unit std, Distral's bonus is about +0.28 per step, more
# than the dense cost (at most -0.1 per step near the ring).
EXTRA = [DISTRAL_BETA100, DISTRAL2COL_BETA100]

if __name__ == "__main__":
    main("pointgoal", digits=2, extra=EXTRA)
