"""Cartpole swing-up (MuJoCo Playground, dm_control suite) over pole length, pole mass,
gravity and the sign of the motor's gear.

`cartpole-swingup-physics` reproduces Playground's `CartpoleSwingup` (dm_control's
`cartpole.swingup` on MJX: a 1 kg cart on a +-1.8 m rail pushed by a motor of gear 10, a
1 m, 0.1 kg capsule pole hanging down at the start, dt = 0.01 s; the smooth reward
`upright x centered x small_control x small_velocity` in [0, 1] per step; no termination
except a non-finite state; truncated after 1000 steps, Playground's episode) and varies its
physics, uniform on:

| context     | default (Playground) | range                      |
|-------------|----------------------|----------------------------|
| pole_length | 1.0 m                | [0.5, 1.5] (0.5-1.5x)      |
| pole_mass   | 0.1 kg               | [0.05, 0.15] (0.5-1.5x)    |
| gravity     | 9.81 m/s^2           | [4.905, 14.715] (0.5-1.5x) |
| gear_sign   | +1                   | -1 or +1, equal odds       |

The gear's sign is the factor worth dividing (as in distillax's gymnax `cartpole`): where it
is -1 the same action pushes the cart the other way, and the observation (cart position,
the pole's cos / sin, velocities) does not say which, so one context-blind policy can pump
energy into the swing in one half of the space only. Lengths, masses and gravity change how
long a swing takes and how hard the motor must pump (a uniform rod swinging about its end,
the cart held: period `2 pi sqrt(2 l / 3 g)`, 1.6 s at the default, 2.8 s at 1.5x length and
0.5x gravity), which one controller can mostly absorb.

A length changes, in the MJX model: the pole's capsule (`geom_size`, `geom_pos`), its centre
of mass (`body_ipos`) and its inertia (`body_inertia`, MuJoCo's capsule formula at the
context's mass); a mass `body_mass` and the inertia; gravity `opt.gravity`; the sign
`actuator_gear`. Observation and reward read the pole's orientation, not its length, so
they are Playground's unchanged. At the default context every replaced field equals
Playground's compiled value exactly, so the task is Playground's env bit for bit
(tests/test_playground.py). Not recomputed: MuJoCo's `dof_invweight0` and
`body_invweight0` (from the masses, by `mj_setConst`), which only scale the softness of the
rail's limit constraint.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv, Task
from distillax.envs.mjx import rescaled_inertia
from distillax.envs.playground import SUITE_PRESET, contextual, load
from distillax.render import mjx_drawer

POLE = 2  # body id of the pole in Playground's cartpole.xml (0 world, 1 cart)
POLE_GEOM = 4  # its capsule (floor, two rails, cart, pole)
RADIUS = 0.045  # the capsule's radius
NAMES = ("pole_length", "pole_mass", "gravity", "gear_sign")


@functools.cache
def _env():
    return load("CartpoleSwingup")


def _defaults() -> tuple[float, ...]:
    m = _env().mj_model
    return tuple(float(np.float32(v)) for v in (
        2 * m.geom_size[POLE_GEOM, 1], m.body_mass[POLE], -m.opt.gravity[2], 1.0))


_DEFAULT = _defaults()
SPACE = ContextSpace(
    names=NAMES,
    low=(0.5 * _DEFAULT[0], 0.5 * _DEFAULT[1], 0.5 * _DEFAULT[2], -1.0),
    high=(1.5 * _DEFAULT[0], 1.5 * _DEFAULT[1], 1.5 * _DEFAULT[2], 1.0),
    values=(None, None, None, (-1.0, 1.0)),
)


def physics(model, c: jax.Array):
    """The MJX model of context `c [4]` (NAMES): only the fields a length, mass, gravity or
    gear sign sets are replaced (see the module docstring)."""
    length, mass, g, sign = (c[i] for i in range(4))
    d = _DEFAULT
    inertia = rescaled_inertia(model.body_inertia[POLE], mass, length, d[1], d[0], RADIUS)
    return model.tree_replace({
        "body_mass": model.body_mass.at[POLE].set(mass),
        "body_inertia": model.body_inertia.at[POLE].set(inertia),
        "body_ipos": model.body_ipos.at[POLE, 2].set(length / 2),
        "geom_size": model.geom_size.at[POLE_GEOM, 1].set(length / 2),
        "geom_pos": model.geom_pos.at[POLE_GEOM, 2].set(length / 2),
        "opt.gravity": model.opt.gravity.at[2].set(-g),
        "actuator_gear": model.actuator_gear.at[0, 0].multiply(sign),
    })


@functools.cache
def make(episode_length: int | None = None) -> ContextualEnv:
    """`cartpole-swingup-physics`: the four-dimensional space above (`episode_length` None:
    Playground's 1000 steps)."""
    return contextual("cartpole-swingup-physics", _env(), SPACE, _DEFAULT, physics=physics,
                      episode_length=episode_length)


# 2 cells, since k-means then splits the space at the gear's sign (the scaled sign is 0 or 1,
# the widest gap), one teacher per sign. Measured (2-core CPU shared with other jobs) with
#   python -m distillax.train --preset cartpole-swingup-physics --seeds 5   (central)
# -> central 556.1 [447.5, 664.7] greedy over 16 held-out contexts, teachers 576.8;
# one context-blind `ppo` 274.3 [239.8, 308.9], one context-aware 327.8 [277.3, 378.3]
# (README, "The Playground tasks on 2 CPU cores").
PRESET = dict(SUITE_PRESET, partitions=2, total_steps=400_000)
# from the side: the rails (+-2 m, world geoms) at the cart's height 1 m, poles up to 1.5 m
# long above or below it
DRAWER = mjx_drawer((-2.3, 2.3, -0.65, 2.65), (0, 2))
TASKS = {"cartpole-swingup-physics": Task(make=make, preset=PRESET, drawer=DRAWER,
                                          trusted=True)}
