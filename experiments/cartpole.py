"""CartPole with a sign-flipping gain (the default experiment): every method, 5 seeds, 3M env
steps per run. The context is (pole length, pole mass, |gain|, gain sign); a context-blind
policy cannot tell the sign, so it can solve one half of the space only.

    .venv/bin/python experiments/cartpole.py      # ~14 min on a 2-core CPU (823 s of runs)

Writes experiments/results/cartpole.{json,md,png}. `--help` lists the options.
"""

from harness import main

BASE: dict = {}  # distillax's defaults: 4 k-means cells, 64 envs x 128 steps

if __name__ == "__main__":
    main("cartpole", BASE, total_steps=3_000_000)
