"""Pendulum (continuous torque) with contextual mass, length and gravity.

Context (mass, length, gravity) in [0.5, 1.5] x [0.5, 1.5] x [5, 15]; the default gymnax
pendulum is (1, 1, 10). Heavier, longer poles under stronger gravity need a swing-up with
more pumping, so the best policy changes across the space.
"""

from gymnax.environments.classic_control.pendulum import EnvParams, Pendulum

from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv

SPACE = ContextSpace(
    names=("mass", "length", "gravity"),
    low=(0.5, 0.5, 5.0),
    high=(1.5, 1.5, 15.0),
)
DEFAULT = EnvParams()


def to_params(c):
    """EnvParams for a context `[3]`."""
    return DEFAULT.replace(m=c[0], l=c[1], g=c[2])


def make() -> ContextualEnv:
    return ContextualEnv("pendulum", Pendulum(), SPACE, to_params,
                         default_context=(DEFAULT.m, DEFAULT.l, DEFAULT.g))
