"""CartPole with a sign-flipping gain (the default experiment): every method, 5 seeds, 500k env
steps per run (`harness.TABLE_STEPS`; half the preset's budget). The context is (pole
length, pole mass, |gain|, gain sign); a context-blind policy cannot tell the sign, so it can
solve one half of the space only.

    .venv/bin/python experiments/cartpole.py      # the time it takes: experiments/results/README.md

Writes experiments/results/cartpole.{json,md,png}. `--help` lists the options.
"""

from harness import main

if __name__ == "__main__":
    main("cartpole")
