"""FourRooms as a multi-task problem (one goal per room; the goal is the context; discrete
actions), Distral's multitask setting in miniature: every method, 5 seeds, 1M env steps per
run, the `tasks` partitioner giving one teacher per goal.

    .venv/bin/python experiments/fourrooms.py     # ~5 min on a 2-core CPU

Writes experiments/results/fourrooms.{json,md,png}. `--help` lists the options.
"""

from harness import main

BASE = dict(partitioner="tasks", partitions=4)

if __name__ == "__main__":
    main("fourrooms", BASE, total_steps=1_000_000, digits=2)
