"""Reacher (MuJoCo Playground, dm_control suite, easy) with the target as the context.

`reacher-easy-target` is Playground's `ReacherEasy` (dm_control's `reacher.easy` on MJX: a
two-link planar arm, 0.12 m + 0.12 m to the fingertip, in a 0.6 m square arena; reward 1
while the fingertip is within 0.06 m of the target's centre (the 0.05 m target plus the
0.01 m fingertip), else 0; no termination except a non-finite state; truncated after 1000
steps, dt = 0.02 s) whose target, which Playground draws at reset from the key, is set from
the context instead: `(target_angle, target_radius)`, uniform on [0, 2 pi) (cyclic) x
[0.05, 0.2] m, Playground's own distribution, at `radius (sin angle, cos angle)` (its
convention). The observation is Playground's (joint angles, fingertip-to-target, joint
velocities), so as in DnC's Picking the variation is in the initial state; k-means cells
are sectors and rings of the reachable disk, and each teacher practises reaching there.

Everything else is Playground's reset (same key use: the arm's shoulder uniform in
[-pi, pi), its wrist uniform in the joint's range), so with the target Playground itself
would draw from the key, `reset_task` is Playground's reset bit for bit (its first
observation, too, which Playground computes before placing the target: the target enters
the observation from the first step on). The default context (0, 0.125) is one target
straight ahead (+y) at mid range.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from mujoco_playground._src.dm_control_suite import reacher

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv, Task
from distillax.envs.playground import SUITE_PRESET, contextual, default_impl
from distillax.render import mjx_drawer

RADII = (0.05, 0.2)  # Playground's target radius range
SPACE = ContextSpace(names=("target_angle", "target_radius"), low=(0.0, RADII[0]),
                     high=(2 * math.pi, RADII[1]), cyclic=(True, False))
DEFAULT_CONTEXT = (0.0, 0.125)


def target_xy(context: jax.Array) -> jax.Array:
    """The target's (x, y) `[2]` of a context `[2]`: `radius (sin angle, cos angle)`, where
    Playground's reset puts it."""
    return context[1] * jnp.stack([jnp.sin(context[0]), jnp.cos(context[0])])


class ReacherTarget(reacher.Reacher):
    """Playground's reacher whose target is set at reset (`reset_task`)."""

    def reset_task(self, rng: jax.Array, task: jax.Array):
        """Playground's reset (same key use) with the target `(angle, radius)` `[2]` given:
        its reset, then the target's mocap position replaced."""
        state = self.reset(rng)
        data = state.data
        mocap = data.mocap_pos.at[self._target_mocap_body_id, :2].set(target_xy(task))
        return state.replace(data=data.replace(mocap_pos=mocap))


@functools.cache
def _env() -> ReacherTarget:
    # a fresh config: Playground's envs lock and update the one they are given
    return ReacherTarget(target_size=reacher.BIG_TARGET, config=reacher.default_config(),
                         config_overrides={"impl": default_impl()})


@functools.cache
def make(episode_length: int | None = None) -> ContextualEnv:
    """`reacher-easy-target`: the target is the context; the physics is Playground's."""
    return contextual("reacher-easy-target", _env(), SPACE, DEFAULT_CONTEXT,
                      task=lambda c: c, task_dim=2, episode_length=episode_length)


# 4 k-means cells (sectors and rings of the reachable disk). Measured, one seed, method
# central, this preset at 1M steps (--total-steps 1000000 --eval-every 25): central 935.7
# greedy at 328k, 959.8 at 410k, 958.0 at 1M over 16 held-out contexts (teachers 962.3; a
# random policy 112.8).
PRESET = dict(SUITE_PRESET, partitions=4, total_steps=400_000)
# from above: the arena's walls are planes (not drawn) at +-0.3; geom 7 is the fingertip,
# geom 8 the target
DRAWER = mjx_drawer((-0.32, 0.32, -0.32, 0.32), (0, 1),
                    goal=lambda c: tuple(float(v) for v in target_xy(c)), trail_geom=7)
TASKS = {"reacher-easy-target": Task(make=make, preset=PRESET, drawer=DRAWER, trusted=True)}
