"""Inverted double pendulum (brax / MJX) over a 6-d physics space (pole lengths and masses,
cart mass, gravity; `distillax.envs.double_pendulum`): every method, 5 seeds, 500k env steps
per run, at the preset `double-pendulum-physics` (brax's reference PPO settings: 256 envs in
all, 40 steps, 8 minibatches, 4 epochs, discount 0.97). Half the preset's 1M: at 500k steps
`ppo` on the default physics is at ~950 (benchmarks/brax_results.json, where brax's own PPO
is at ~820 by 512k), and a table at 1M would take most of `make experiments`' time. The
physics task of the results; needs the brax extra (`pip install 'distillax[brax]'`; `make`
installs it).

    .venv/bin/python experiments/double_pendulum_physics.py

Writes experiments/results/double-pendulum-physics.{json,md,png}; the time it took is in
experiments/results/README.md. brax's own PPO at the default physics, for comparison:
benchmarks/brax_results.md (`python benchmarks/brax_peer.py`).
"""

from harness import main

if __name__ == "__main__":
    main("double-pendulum-physics", total_steps=500_000)
