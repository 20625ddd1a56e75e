"""FourRooms as a multi-task problem (one goal per room; the goal is the context; discrete
actions), Distral's multitask setting in miniature: every method, 5 seeds, 1M env steps per
run, the `tasks` partitioner giving one teacher per goal.

    .venv/bin/python experiments/fourrooms.py     # ~5 min on a 2-core CPU

Writes experiments/results/fourrooms.{json,md,png}. `--help` lists the options.
"""

from harness import main

BASE = dict(partitioner="tasks", partitions=4)

# Distral's regularised reward pays (1/beta)(alpha log pi_c - log pi_i) per step: at beta = 5,
# for uniform policies over the 4 actions, about +0.14 per step, +14 over a 100-step episode,
# against +1 for reaching the goal (which ends the episode and the bonus), so with the
# default beta teachers learn to avoid the goal. The extra row gives Distral a beta that
# suits this reward scale.
EXTRA = [("distral-beta100", dict(method="distral", distral_beta=100.0))]

if __name__ == "__main__":
    main("fourrooms", BASE, total_steps=1_000_000, digits=2, extra=EXTRA)
