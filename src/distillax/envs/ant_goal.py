"""Ant Position (DnC, Ghosh et al., ICLR 2018): the brax/MJX ant walks to a goal it cannot see.

Reproduces DnC's "Ant Position" task (released code: `dnc/envs/ant.py`, github.com/dibyaghosh/dnc)
on brax's MJX ant: the goal lies on a circle of radius 5 around the start, at an angle
uniform in [0, 2π); the context is that angle, `(goal_angle,)` in [0, 2π), the goal
`g = 5 (cos θ, sin θ)`. The observation is brax's ant observation with the torso position
kept (`q [15]`, `qd [14]`: 29 numbers) and never the goal, so a context-blind teacher has to
learn where its own cell's goals lie; the central policy gets the angle as context features,
(cos θ, sin θ) (a cyclic dimension).
(DnC's own observation also lists the goal; here the context is what only the central
policy sees, as in distillax's other goal tasks.)

Reward, DnC's: `r = 1 - |xy_torso - g| / 5 - 0.5 * 1e-2 * sum(a^2)` with the clipped action
(DnC's `ctrl_cost = 0.5 * 1e-2 * sum((a / scaling)^2)`, scaling 1 for [-1, 1] controls), so 0 at
the start and 1 at the goal. DnC also subtracts a contact cost `0.5 * 1e-3 * sum(clip(cfrc_ext,
-1, 1)^2)`; it is left out, as brax's own ant leaves it out (`use_contact_forces` is not
implemented): MJX only fills `cfrc_ext` with an extra `rne_postconstraint` pass each step,
and the term is at most 0.04 per step. Terminated, as in DnC and brax, when the torso height
leaves [0.2, 1.0] or the state is not finite (then the reward is 0, not NaN); DnC's extra
"torso touches the floor" test is implied by a torso height under 0.2 (its radius is 0.25).
Truncated after 1000 steps (brax's ant episode). brax's reset: q = init_q + U(-0.1, 0.1),
qd = 0.1 N(0, 1); physics (dt = 0.05 s, Newton solver) brax's MJX ant.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from brax import math as bmath
from brax.envs.ant import Ant
from brax.envs.base import State

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv, Task
from distillax.envs.brax import contextual
from distillax.render import mjx_drawer

RADIUS = 5.0  # DnC: goals on a circle of radius 5 around the start
CTRL_COST = 0.5 * 1e-2  # DnC's 0.5 * ctrl_cost_coeff
HEALTHY_Z = (0.2, 1.0)

SPACE = ContextSpace(names=("goal_angle",), low=(0.0,), high=(2 * math.pi,),
                     cyclic=(True,))


def goal_of(c: jax.Array) -> jax.Array:
    """The goal `[2]` of a context `[1]` (its angle)."""
    return RADIUS * jnp.stack([jnp.cos(c[0]), jnp.sin(c[0])])


class AntGoal(Ant):
    """brax's MJX ant with DnC's goal reward; the goal lives in `state.info["goal"]`.

    Also a plain brax env: `reset(rng)` draws the angle uniformly (as DnC's `propose`).
    """

    def __init__(self, **kwargs):
        super().__init__(backend="mjx", exclude_current_positions_from_observation=False,
                         **kwargs)

    def reset(self, rng: jax.Array) -> State:
        rng, key = jax.random.split(rng)
        angle = jax.random.uniform(key, (1,), minval=0.0, maxval=2 * math.pi)
        return self.reset_task(rng, goal_of(angle))

    def reset_task(self, rng: jax.Array, goal: jax.Array) -> State:
        """brax's ant reset, with the goal `[2]` stored for the reward."""
        state = super().reset(rng)
        dist = bmath.safe_norm(state.pipeline_state.x.pos[0, :2] - goal)
        return state.replace(metrics={"distance": dist}, info={"goal": goal})

    def step(self, state: State, action: jax.Array) -> State:
        pipeline_state = self.pipeline_step(state.pipeline_state, action)
        torso = pipeline_state.x.pos[0]
        dist = bmath.safe_norm(torso[:2] - state.info["goal"])
        reward = 1.0 - dist / RADIUS - CTRL_COST * jnp.sum(jnp.square(action))
        finite = jnp.all(jnp.isfinite(pipeline_state.q)) & jnp.all(jnp.isfinite(pipeline_state.qd))
        healthy = (torso[2] >= HEALTHY_Z[0]) & (torso[2] <= HEALTHY_Z[1]) & finite
        return state.replace(
            pipeline_state=pipeline_state, obs=self._get_obs(pipeline_state),
            reward=jnp.where(finite, reward, 0.0), done=1.0 - healthy.astype(jnp.float32),
            metrics={"distance": dist})


@functools.cache
def make(episode_length: int = 1000) -> ContextualEnv:
    """`ant-goal`: the goal angle is the context; the physics is brax's, shared by all envs."""
    return contextual("ant-goal", AntGoal(), SPACE, (0.0,), task=goal_of, task_dim=2,
                      episode_length=episode_length)


# The GPU flagship, not run (no GPU in this session; benchmarks/gpu_ant_goal.py is the
# script): thousands of envs, brax's ant settings (unroll 5 x 8 minibatches, 4 epochs,
# discount 0.97, lr 3e-4), DnC's reward is in [~-1, 1] per step, so no scaling.
PRESET = dict(
    num_envs=4096, num_steps=40, num_minibatches=8, update_epochs=4, learning_rate=3e-4,
    gamma=0.97, reward_scale=1.0, normalize_obs=True,
    hidden_sizes=(256, 256), ent_coef=1e-2, total_steps=50_000_000, eval_every=20,
    eval_contexts=64,
)


def _goal(context: np.ndarray) -> tuple[float, float]:
    return RADIUS * math.cos(float(context[0])), RADIUS * math.sin(float(context[0]))


# goals on the circle of radius 5; geom 1 is the torso
DRAWER = mjx_drawer((-6.0, 6.0, -6.0, 6.0), (0, 1), goal=_goal, trail_geom=1)
TASKS = {"ant-goal": Task(make=make, preset=PRESET, drawer=DRAWER, trusted=True)}
