"""rejax 0.1.3's PPO on CartPole-v1 as a user runs it, for `make bench`'s end-to-end section:
one process, from start to its results.json (`benchmarks/run.py` times the whole process).

    .venv/bin/python benchmarks/rejax_train.py --num-envs 4 --num-steps 128 \
        --total-steps 524288 --eval-freq 262144 --out /tmp/rejax/results.json

Hyperparameters are `run.PEER_HP` (the same as distillax's side); rejax evaluates 128
sampled-action episodes every `--eval-freq` env steps (its own evaluation, early exit per
episode). rejax is unedited; gymnax 1.0's 6-value `step` is adapted to the 5 values rejax
unpacks (`FiveValueStep`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

T0 = time.perf_counter()  # the process's own start, as near as Python gets

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from peer import PEER_HP, FiveValueStep  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--num-envs", type=int, required=True)
    p.add_argument("--num-steps", type=int, required=True)
    p.add_argument("--total-steps", type=int, required=True)
    p.add_argument("--eval-freq", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    import gymnax
    from rejax import PPO

    env, env_params = gymnax.make("CartPole-v1")
    algo = PPO.create(
        env=FiveValueStep(env), env_params=env_params, num_envs=a.num_envs,
        num_steps=a.num_steps, num_epochs=4, num_minibatches=4, total_timesteps=a.total_steps,
        eval_freq=a.eval_freq, skip_initial_evaluation=True,
        learning_rate=PEER_HP["learning_rate"], max_grad_norm=PEER_HP["max_grad_norm"],
        gamma=PEER_HP["gamma"], gae_lambda=PEER_HP["gae_lambda"], clip_eps=PEER_HP["clip_eps"],
        vf_coef=PEER_HP["vf_coef"], ent_coef=PEER_HP["ent_coef"],
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (64, 64)})
    key = jax.random.PRNGKey(a.seed)
    t = time.perf_counter()
    compiled = jax.jit(algo.train).lower(key).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    _, (lengths, returns) = jax.block_until_ready(compiled(key))
    train_s = time.perf_counter() - t
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"final_return": float(jnp.mean(returns[-1])),
                   "evaluations": int(np.asarray(returns).shape[0]), "compile_s": compile_s,
                   "train_s": train_s, "wall_in_process_s": time.perf_counter() - T0}, f)


if __name__ == "__main__":
    main()
