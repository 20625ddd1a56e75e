"""Inverted double pendulum (brax / MJX) with contextual pole lengths, masses and gravity.

`double-pendulum-physics` reproduces brax's `inverted_double_pendulum` (a cart on a 1 m rail
pushed by a 500 N motor, two 0.6 m capsule poles, dt = 0.02 s, reward
`10 - 0.01 x_tip^2 - (y_tip - 2)^2 - 1e-3 w1^2 - 5e-3 w2^2`, terminated when the tip falls
to y <= 1, truncated after 1000 steps) and varies its physics over CARL-style ranges.
CARL's brax double pendulum (`CARLBraxInvertedDoublePendulum`) exposes gravity, the cart and
pole masses, friction, elasticity, damping and viscosity with wide validity bounds and no
lengths; its experiments vary a feature relative to its default. Here, uniform on:

| context    | default (brax)  | range                 |
|------------|-----------------|-----------------------|
| length_1   | 0.6 m           | [0.45, 0.75] (0.75-1.25x) |
| length_2   | 0.6 m           | [0.45, 0.75] (0.75-1.25x) |
| mass_1     | 4.1987 kg       | [0.5x, 1.5x]          |
| mass_2     | 4.1987 kg       | [0.5x, 1.5x]          |
| mass_cart  | 10.472 kg       | [0.5x, 1.5x]          |
| gravity    | 9.81 m/s^2      | [0.5x, 1.5x]          |

Lengths stay within +-25%: the rail (+-1 m) and the 500 N gear were sized for 0.6 m poles.
The default masses are MuJoCo's, from density 1000 (`inertiafromgeom`). Friction,
elasticity and damping are left out: nothing collides (every geom has contype 0) and brax's
joint damping is tiny, so they change little. Setting CARL's way, `sys.gravity`, would
change nothing under MJX, which reads `opt.gravity`.

A length changes, in the MJX model: the pole's capsule (`geom_size`, `geom_pos`), its centre
of mass (`body_ipos`), its inertia (`body_inertia`, MuJoCo's capsule formula at the
context's mass), the next pole's attachment (`body_pos`) and the tip site (`site_pos`).
`PhysicsDoublePendulum` reads the tip and the fall height from the model (`site_pos`,
`body_pos`), so the reward's tip and the termination follow the geometry: terminated when
y_tip <= (length_1 + length_2) / 1.2 (brax's 1.0 of a 1.2 m standing height); the rest of
brax's reward is unchanged. At the default context every replaced field equals brax's
compiled value exactly, so the task is brax's env bit for bit (tests/test_brax.py). Not
recomputed: MuJoCo's `dof_invweight0` (set by `mj_setConst` from the masses), which only
scales the softness of the slider's limit constraint.

`double-pendulum` is the same env at brax's default physics only (a one-context space): the
task the peer benchmark compares with brax's own PPO.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from brax import base
from brax.envs.base import State
from brax.envs.inverted_double_pendulum import InvertedDoublePendulum

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv, Task
from distillax.envs.brax import contextual
from distillax.envs.mjx import capsule_inertia_per_mass, rescaled_inertia
from distillax.render import mjx_drawer

CART, POLE_1, POLE_2 = 1, 2, 3  # body ids in brax's inverted_double_pendulum.xml
GEOM_1, GEOM_2 = 3, 4  # the poles' capsules
TIP = 0  # the tip site, on pole 2
RADIUS = 0.045  # both poles' capsule radius
STANDING_PER_FALL = 1.2  # brax: standing height 1.2 m, terminated at y <= 1.0


class PhysicsDoublePendulum(InvertedDoublePendulum):
    """brax's inverted double pendulum whose tip and fall height follow `self.sys`."""

    def __init__(self, **kwargs):
        super().__init__(backend="mjx", **kwargs)

    def step(self, state: State, action: jax.Array) -> State:
        """As brax's step, with the tip at `site_pos[TIP]` (brax: (0, 0, 0.6)) and the fall
        at y <= (l1 + l2) / 1.2 (brax: 1.0)."""
        pipeline_state = self.pipeline_step(state.pipeline_state, action)
        # x excludes the world body: body b is x[b - 1]
        tip = pipeline_state.x.take(POLE_2 - 1).do(
            base.Transform.create(pos=self.sys.site_pos[TIP]))
        x, _, y = tip.pos
        v1, v2 = pipeline_state.qd[1:]
        dist_penalty = 0.01 * x**2 + (y - 2) ** 2
        vel_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
        fall = (self.sys.body_pos[POLE_2, 2] + self.sys.site_pos[TIP, 2]) / STANDING_PER_FALL
        done = jnp.where(y <= fall, jnp.float32(1), jnp.float32(0))
        reward = (1 - done) * 10 - dist_penalty - vel_penalty
        return state.replace(pipeline_state=pipeline_state, obs=self._get_obs(pipeline_state),
                             reward=reward, done=done)


NAMES = ("length_1", "length_2", "mass_1", "mass_2", "mass_cart", "gravity")


@functools.cache
def _env() -> PhysicsDoublePendulum:
    return PhysicsDoublePendulum()


def _defaults() -> tuple[float, ...]:
    sys = _env().sys
    mass = np.asarray(sys.body_mass, np.float32)
    return tuple(float(v) for v in (
        np.float32(sys.body_pos[POLE_2, 2]), np.float32(sys.site_pos[TIP, 2]),
        mass[POLE_1], mass[POLE_2], mass[CART], np.float32(-sys.opt.gravity[2])))


def space_for(default: tuple[float, ...]) -> ContextSpace:
    scale_low = (0.75, 0.75, 0.5, 0.5, 0.5, 0.5)
    scale_high = (1.25, 1.25, 1.5, 1.5, 1.5, 1.5)
    return ContextSpace(names=NAMES, low=tuple(d * s for d, s in zip(default, scale_low)),
                        high=tuple(d * s for d, s in zip(default, scale_high)))


def _per_mass_inertia(length: jax.Array) -> jax.Array:
    """Capsule inertia per unit mass `[3]` of a pole (radius RADIUS): MuJoCo's formula
    (`mjx.capsule_inertia_per_mass`)."""
    return capsule_inertia_per_mass(length, RADIUS)


def physics(sys, c: jax.Array):
    """The `System` of context `c [6]` (NAMES): only the fields a length, mass or gravity
    sets are replaced. Inertia is brax's compiled value rescaled, `I0 (m / m0) (g(l) /
    g(l0))` with g the per-mass capsule inertia, so the default context gives the compiled
    values exactly (x / x = 1 in floating point) and others MuJoCo's formula."""
    l1, l2, m1, m2, mc, g = (c[i] for i in range(6))
    d = _DEFAULT
    inertia_1 = rescaled_inertia(sys.body_inertia[POLE_1], m1, l1, d[2], d[0], RADIUS)
    inertia_2 = rescaled_inertia(sys.body_inertia[POLE_2], m2, l2, d[3], d[1], RADIUS)
    zero = jnp.zeros((), jnp.float32)
    up = lambda z: jnp.stack([zero, zero, z])  # noqa: E731  a point on the z axis
    return sys.tree_replace({
        "body_mass": sys.body_mass.at[jnp.array([POLE_1, POLE_2, CART])].set(
            jnp.stack([m1, m2, mc])),
        "body_inertia": sys.body_inertia.at[POLE_1].set(inertia_1).at[POLE_2].set(inertia_2),
        "body_ipos": sys.body_ipos.at[POLE_1].set(up(l1 / 2)).at[POLE_2].set(up(l2 / 2)),
        "body_pos": sys.body_pos.at[POLE_2].set(up(l1)),
        "geom_size": sys.geom_size.at[GEOM_1, 1].set(l1 / 2).at[GEOM_2, 1].set(l2 / 2),
        "geom_pos": sys.geom_pos.at[GEOM_1].set(up(l1 / 2)).at[GEOM_2].set(up(l2 / 2)),
        "site_pos": sys.site_pos.at[TIP].set(up(l2)),
        "opt.gravity": sys.opt.gravity.at[2].set(-g),
    })


_DEFAULT = _defaults()
SPACE = space_for(_DEFAULT)


@functools.cache
def make(episode_length: int = 1000) -> ContextualEnv:
    """`double-pendulum-physics`: the six-dimensional physics space above."""
    return contextual("double-pendulum-physics", _env(), SPACE, _DEFAULT, physics=physics,
                      episode_length=episode_length)


@functools.cache
def make_default(episode_length: int = 1000) -> ContextualEnv:
    """`double-pendulum`: brax's default physics only (one context; for the brax PPO peer).
    The physics is fixed, so every env shares brax's own `System` (no per-env model)."""
    space = ContextSpace(SPACE.names, SPACE.low, SPACE.high, tasks=(_DEFAULT,))
    return contextual("double-pendulum", _env(), space, _DEFAULT, physics=None,
                      episode_length=episode_length)


# The inverted double pendulum, at brax's reference settings for the peer benchmark
# (256 envs, unroll 5 x 8 minibatches, 4 epochs, discount 0.97, lr 3e-4) with distillax's
# value clipping in mind (reward x 0.01: returns ~ 9 / (1 - 0.97) x 0.01 ~ 3).
# Measured (2-core CPU shared with other jobs, load 3-7), `ppo` on `double-pendulum`:
#   python -m distillax.train --task double-pendulum --method ppo --num-envs 256 \
#     --num-steps 40 --num-minibatches 8 --update-epochs 4 --learning-rate 3e-4 \
#     --gamma 0.97 --reward-scale 0.01 --normalize-obs --hidden-sizes 64,64 \
#     --total-steps 1000000 --eval-every 1000 --eval-contexts 16
#   -> held-out greedy return 1346 (16 episodes) after 993,280 env steps, 17,719
#      env-steps/s of training (brax PPO's reference: ~1140 at 1M, ~10.3k env-steps/s);
#      see benchmarks/brax_results.md for the side-by-side run.
PRESET = dict(
    num_envs=256, num_steps=40, num_minibatches=8, update_epochs=4, learning_rate=3e-4,
    gamma=0.97, gae_lambda=0.95, reward_scale=0.01,
    normalize_obs=True, hidden_sizes=(64, 64), ent_coef=0.01, total_steps=1_000_000,
    eval_every=1000, eval_contexts=16,
)
DRAWER = mjx_drawer((-1.3, 1.3, -0.3, 1.8), (0, 2))
# The physics task with the same settings; `ppo` (context-blind) measured with the command
# above and --task double-pendulum-physics: see benchmarks/brax_results.md.
TASKS = {"double-pendulum-physics": Task(make=make, preset=PRESET, drawer=DRAWER, trusted=True),
         "double-pendulum": Task(make=make_default, preset=PRESET, drawer=DRAWER, trusted=True)}
