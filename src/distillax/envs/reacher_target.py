"""Reacher Target: brax's MJX reacher with its target drawn from a square (the context).

A miniature of DnC's "Picking" (Ghosh et al., ICLR 2018; `dnc/envs/picker.py`), where the
block to pick lies uniformly in a square of half-width 0.1: here the reacher's target lies
uniformly in the square [-0.14, 0.14]^2 around the arm's base, the context `(target_x,
target_y)`. The square fits inside the 0.21 m reach of the arm (0.1 m link + 0.11 m to the
fingertip; corners at 0.198 m), so every context is solvable; brax's own reacher draws the
target uniformly in a disk of radius 0.2. As in Picking (and brax's reacher), the target is
part of the observation (brax's 11 numbers: cos / sin of the joints, the target, the tip's
velocity, tip - target), so the variation is in the initial state, DnC's setting.

Everything else is brax's reacher: reward `-|tip - target| - sum(a^2)` (clipped action),
no termination, truncated after 1000 steps (brax's reacher episode), reset q = init_q +
U(-0.1, 0.1), qd = U(-0.005, 0.005) on the arm. The default context (0.1, 0) is one target
at half the reach; with a target brax itself drew, `reset_task` is brax's reset bit for bit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from brax.envs.base import State
from brax.envs.reacher import Reacher

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv, Task
from distillax.envs.brax import contextual
from distillax.render import mjx_drawer

HALF_WIDTH = 0.14
SPACE = ContextSpace(names=("target_x", "target_y"), low=(-HALF_WIDTH, -HALF_WIDTH),
                     high=(HALF_WIDTH, HALF_WIDTH))


class ReacherTarget(Reacher):
    """brax's MJX reacher whose target is set at reset (`reset_task`)."""

    def __init__(self, **kwargs):
        super().__init__(backend="mjx", **kwargs)

    def reset(self, rng: jax.Array) -> State:
        rng, key = jax.random.split(rng)
        target = jax.random.uniform(key, (2,), minval=-HALF_WIDTH, maxval=HALF_WIDTH)
        return self.reset_task(rng, target)

    def reset_task(self, rng: jax.Array, target: jax.Array) -> State:
        """brax's reacher reset (same key use) with the target `[2]` given."""
        _, rng1, rng2 = jax.random.split(rng, 3)
        q = self.sys.init_q + jax.random.uniform(rng1, (self.sys.q_size(),), minval=-0.1,
                                                 maxval=0.1)
        qd = jax.random.uniform(rng2, (self.sys.qd_size(),), minval=-0.005, maxval=0.005)
        q = q.at[2:].set(target)
        qd = qd.at[2:].set(0)
        pipeline_state = self.pipeline_init(q, qd)
        zero = jnp.zeros(())
        return State(pipeline_state, self._get_obs(pipeline_state), zero, zero,
                     {"reward_dist": zero, "reward_ctrl": zero})


@functools.cache
def make(episode_length: int = 1000) -> ContextualEnv:
    """`reacher-target`: the target is the context; the physics is brax's."""
    return contextual("reacher-target", ReacherTarget(), SPACE, (0.1, 0.0),
                      task=lambda c: c, task_dim=2, episode_length=episode_length)


# Not tuned (no run to convergence here): brax's reacher episodes are 1000 steps of
# reward ~ -0.1 to -0.5, so reward x 0.1 keeps returns near 5; 0.95 discount as brax's
# reacher setting. Only the tiny smoke run of tests/test_brax.py has been run.
PRESET = dict(
    num_envs=256, num_steps=40, num_minibatches=8, update_epochs=4, learning_rate=3e-4,
    gamma=0.95, reward_scale=0.1, normalize_obs=True,
    hidden_sizes=(64, 64), ent_coef=1e-3, total_steps=5_000_000, eval_every=1000,
    eval_contexts=16,
)
# the arena's walls are capsules at +-0.3 (body 0); geom 8 is the fingertip
DRAWER = mjx_drawer((-0.33, 0.33, -0.33, 0.33), (0, 1),
                     goal=lambda c: (float(c[0]), float(c[1])), trail_geom=8)
TASKS = {"reacher-target": Task(make=make, preset=PRESET, drawer=DRAWER, trusted=True)}
