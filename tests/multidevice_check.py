"""Run in its own process (the device count is fixed once JAX starts): one training chunk on
a mesh of 1 device and of 4 simulated CPU devices from the same state; print the largest
difference of params, normalisers and env observations, how far training moved the params
(so an equality of two runs that did nothing cannot pass), and check replication.

    python tests/multidevice_check.py METHOD[,METHOD...] [SEEDS] [NOISE_EVERY]

METHOD:gru makes both roles recurrent, METHOD:central-gru the central policy only (either
way that method's run has no noise injection).

SEEDS > 1: a multi-seed state; NOISE_EVERY: noise injection's one env in N (each device holds
2 envs per cell, so 2 gives every device one noisy env in each cell).

One JSON line per method, in the order given (several methods share the process start-up).
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=4").strip()

import jax
import numpy as np

from distillax import parallel
from distillax.config import Config
from distillax.model import build_model
from distillax.trainer import init_run_state, make_runner

methods = (sys.argv[1] if len(sys.argv) > 1 else "central").split(",")
seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
noise_every = int(sys.argv[3]) if len(sys.argv) > 3 else 0


def max_abs_diff(a, b) -> float:
    diff = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64) - y))), a, b)
    return max(jax.tree.leaves(diff))


for name in methods:
    method, _, memory = name.partition(":")
    config = Config(method=method, num_envs=16, num_steps=16, total_steps=16 * 16 * 4,
                    num_minibatches=2, update_epochs=2, normalize_obs=True, hidden_sizes=(16,),
                    kmeans_samples=1000, partitions=2, seeds=seeds,
                    noise_every=0 if memory else noise_every,
                    teacher_memory="gru" if memory == "gru" else "none",
                    central_memory="gru" if memory else "none", memory_size=8)
    model = build_model(config)
    out = {}
    init = jax.device_get(init_run_state(model).params)  # PRNGKey(0), or [seeds] stacked
    for n in (1, 4):
        mesh = parallel.make_mesh(n)
        state = init_run_state(model)
        runner = make_runner(model, state, mesh, 2)
        state, metrics = runner.step(runner.place(state), runner.count(2))
        parallel.assert_replicated(state.params)
        parallel.assert_replicated(state.opt)
        out[n] = jax.device_get((state.params, state.opt, state.teacher_stats,
                                 state.central_stats, state.env.obs, metrics.update.loss))
    print(json.dumps({"method": name, "devices": len(jax.devices()),
                      "max_abs_diff": max_abs_diff(out[1], out[4]),
                      "moved": max_abs_diff(out[1][0], init)}), flush=True)
