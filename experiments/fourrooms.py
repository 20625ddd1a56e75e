"""FourRooms as a multi-task problem (one goal per room; the goal is the context; discrete
actions), Distral's multitask setting in miniature: every method, 5 seeds, 500k env steps per
run (`harness.TABLE_STEPS`), the `tasks` partitioner giving one teacher per goal.

    .venv/bin/python experiments/fourrooms.py    # the time it takes: experiments/results/README.md

Writes experiments/results/fourrooms.{json,md,png}. `--help` lists the options.
"""

from harness import DISTRAL2COL_BETA100, DISTRAL_BETA100, main

# At beta = 5, for uniform policies over the 4 actions, Distral's bonus is about +0.14 per
# step, +14 over a 100-step episode, against +1 for reaching the goal.
EXTRA = [DISTRAL_BETA100, DISTRAL2COL_BETA100]

if __name__ == "__main__":
    main("fourrooms", digits=2, extra=EXTRA)
