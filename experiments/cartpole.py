"""CartPole with a sign-flipping gain (the default experiment): every method, 5 seeds, 3M env
steps per run. The context is (pole length, pole mass, |gain|, gain sign); a context-blind
policy cannot tell the sign, so it can solve one half of the space only.

    .venv/bin/python experiments/cartpole.py      # ~14 min on a 2-core CPU (823 s of runs)

Writes experiments/results/cartpole.{json,md,png}. `--help` lists the options.
"""

from harness import main

if __name__ == "__main__":
    main("cartpole")
