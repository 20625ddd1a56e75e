"""Inverted double pendulum (brax / MJX) over a 6-d physics space (pole lengths and masses,
cart mass, gravity; `distillax.envs.double_pendulum`): every method, 5 seeds, 400k env steps
per run, at the preset `double-pendulum-physics` (brax's reference PPO settings: 256 envs in
all, 40 steps, 8 minibatches, 4 epochs, discount 0.97). 40% of the preset's 1M, and ~13
points per learning curve: each row compiles MJX programs for ~40-80 s on 2 cores, so this
is what fits `make experiments` in 75 minutes beside the other tables. By 400k steps `ppo`
on the default physics is at ~800-900 and climbing (benchmarks/brax_results.json: 793 at
307k and 906 at 430k; brax's own PPO: 582 at 256k, 803 at 512k). Needs the brax extra
(`pip install 'distillax[brax]'`; `make` installs it).

    .venv/bin/python experiments/double_pendulum_physics.py

Writes experiments/results/double-pendulum-physics.{json,md,png}; the time it took is in
experiments/results/README.md. brax's own PPO at the default physics, for comparison:
benchmarks/brax_results.md (`python benchmarks/brax_peer.py`).
"""

from harness import main

if __name__ == "__main__":
    main("double-pendulum-physics", total_steps=400_000, points=10)
