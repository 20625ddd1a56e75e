"""PointGoal: a 2-D point mass that must reach a goal on a ring; the goal angle is the context.

The miniature of DnC's "Ant position". Context (goal_angle,) in [0, 2π); the goal is
`goal_radius * (cos θ, sin θ)` with radius 1. The observation is the point's position and
velocity only, never the goal: a context-blind teacher has to learn where the goals of its
own partition lie, and one context-blind policy over the whole ring can do no better than
stay near the centre, so dividing the ring helps. The central policy sees the angle, as
(cos θ, sin θ) (a cyclic context dimension: 0 and 2π are one goal, so one input).

Dynamics: a damped double integrator, semi-implicit Euler with dt = 0.1,
`v' = v + dt (max_force · clip(a, -1, 1) - damping · v)`, `x' = x + dt v'`; with unit force
and damping the top speed is 1, so the ring is ~15 steps away. Episodes start at rest within
0.05 of the origin.

Reward, chosen so PPO learns it within 1M steps: `-0.1 |x' - g|` each step (dense)
minus a small control cost `0.001 |a|²`; the episode terminates when the point is within
0.1 of the goal, with a bonus of +1 on that step. Terminating also ends the negative
rewards, so reaching the goal fast beats hovering near it, and the bonus pays a teacher
that cannot see the goal for searching its partition's arc for it.
Episodes are truncated after 100 steps: sitting at the origin scores -10 (100 steps at
distance 1). The 0.1 scale matters: with `-|x' - g|` and a +10 bonus, large value targets
dominate the clipped norm of PPO's joint gradient (an early one-off run, not kept, learned far
less). At 1M env steps over 5 seeds (`experiments/pointgoal.py`, results in
experiments/results/pointgoal.json): PPO returns -10.82 context-blind (no better than staying
at the centre) and -0.89 with the context; 4 k-means teachers (90-degree arcs) reach -1.85 to
-2.29 depending on the coupling.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv, Drawer, Task


@struct.dataclass
class EnvState(environment.EnvState):
    pos: jax.Array  # [2]
    vel: jax.Array  # [2]
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    # derived from the context (angle 0 -> (1, 0)); `to_params` recomputes both
    goal_x: float = 1.0
    goal_y: float = 0.0
    goal_radius: float = 1.0  # the ring the goals lie on
    dt: float = 0.1
    max_force: float = 1.0  # force at |action| = 1 (actions are clipped to [-1, 1])
    damping: float = 1.0  # velocity damping; top speed = max_force / damping
    goal_tolerance: float = 0.1  # distance at which the goal counts as reached
    dist_cost: float = 0.1  # reward per step per unit of distance to the goal
    goal_bonus: float = 1.0  # reward on the step that reaches the goal
    ctrl_cost: float = 0.001  # weight of |a|^2 (clipped action)
    init_noise: float = 0.05  # start position uniform in [-init_noise, init_noise]^2
    max_steps_in_episode: int = 100


class PointGoal(environment.Environment[EnvState, EnvParams]):
    """A point mass on the plane, pushed by a clipped 2-D force towards an unobserved goal."""

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key: jax.Array, state: EnvState, action: jax.Array,
                 params: EnvParams) -> tuple[jax.Array, EnvState, jax.Array, jax.Array,
                                             dict[Any, Any]]:
        a = jnp.clip(jnp.asarray(action, jnp.float32).reshape(2), -1.0, 1.0)
        vel = state.vel + params.dt * (params.max_force * a - params.damping * state.vel)
        pos = state.pos + params.dt * vel
        state = EnvState(pos=pos, vel=vel, time=state.time + 1)
        dist = _distance(state, params)
        reached = dist <= params.goal_tolerance
        reward = (-params.dist_cost * dist - params.ctrl_cost * jnp.sum(a**2)
                  + params.goal_bonus * reached)
        return (jax.lax.stop_gradient(self.get_obs(state)), jax.lax.stop_gradient(state),
                reward, reached, {"discount": self.discount(state, params)})

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        pos = jax.random.uniform(key, (2,), minval=-params.init_noise, maxval=params.init_noise)
        state = EnvState(pos=pos, vel=jnp.zeros(2), time=0)
        return self.get_obs(state), state

    def get_obs(self, state: EnvState, params: EnvParams | None = None, key=None) -> jax.Array:
        """[x, y, vx, vy]: no goal, so a teacher cannot read the context off the state."""
        return jnp.concatenate([state.pos, state.vel])

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return _distance(state, params) <= params.goal_tolerance

    @property
    def name(self) -> str:
        return "PointGoal"

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)

    def observation_space(self, params: EnvParams) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (4,), jnp.float32)


def _distance(state: EnvState, params: EnvParams) -> jax.Array:
    return jnp.linalg.norm(state.pos - jnp.stack([params.goal_x, params.goal_y]))


SPACE = ContextSpace(names=("goal_angle",), low=(0.0,), high=(2.0 * math.pi,),
                     cyclic=(True,))
DEFAULT = EnvParams()


def to_params(c):
    """EnvParams for a context `[1]` (the goal angle): the goal on the ring at that angle."""
    return DEFAULT.replace(goal_x=DEFAULT.goal_radius * jnp.cos(c[0]),
                           goal_y=DEFAULT.goal_radius * jnp.sin(c[0]))


def make() -> ContextualEnv:
    return ContextualEnv("pointgoal", PointGoal(), SPACE, to_params, default_context=(0.0,))


def draw(c: Any, f: Any, t: int, context: np.ndarray, env: ContextualEnv) -> None:
    """The goal ring, the goal at the context's angle (its tolerance as a circle), and the
    point with its trail."""
    p = env.env.default_params
    ring = [(p.goal_radius * math.cos(a), p.goal_radius * math.sin(a))
            for a in np.linspace(0, 2 * math.pi, 73)]
    c.line(ring, "grid", 0.01)
    g = (p.goal_radius * math.cos(float(context[0])), p.goal_radius * math.sin(float(context[0])))
    c.disc(*g, p.goal_tolerance, "goal")
    c.line(f.pos[:t + 1], "trail", 0.02)
    c.disc(float(f.pos[t, 0]), float(f.pos[t, 1]), 0.05, 0)


# The settings of experiments/results, 1M env steps (the budget is part of the preset; the
# results tables run it at 500k, `harness.TABLE_STEPS`, to fit `make experiments` in 75
# minutes).
PRESET = {"total_steps": 1_000_000}  # 4 k-means cells: 90-degree arcs
TASKS = {"pointgoal": Task(make=make, preset=PRESET,
                           drawer=Drawer((-1.35, 1.35, -1.35, 1.35), draw), trusted=True)}
