"""Methods: one frozen spec per method, the single place that says what a method is.

A method couples the teachers (one PPO learner per partition) with each other or with the
central policy. Its `MethodSpec` says whether it has a central policy, whether the teachers
share the central network (Distral's 2-column architecture), its coupling (a pure function
of the update's minibatch terms, added to each teacher's loss as `alpha * L_couple_i`), its
reward shaping (Distral's regularised reward), its distillation weights (gamma^t) and default
divergence, whether DnC's periodic reset is allowed, and whether it trains a single teacher.
The config, model, update, trainer, evaluator and CLI read the spec; none of them branches on
a method name. A new method is a `MethodSpec` passed to `register` (and, if it needs one, a
new coupling function in `losses.py`):

    from distillax import methods
    methods.register(methods.MethodSpec(name="mine", summary="...", coupling=my_coupling))

Every teacher i minimises (summed over teachers with the partition weights rho_i, plus
lambda times the distillation term, in `update.loss_fn`)

    L_i = L_clip_i + c_v L_value_i - c_ent H_i + alpha L_couple_i

where `L_couple_i` is the spec's coupling on teacher i's minibatch; `alpha` is
`Config.coupling_coef`, or, when that is None, the spec's own default (`coupling_coef`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from distillax import losses
from distillax.distributions import Distribution


@dataclasses.dataclass(frozen=True)
class CouplingInputs:
    """What a coupling reads from one minibatch: every teacher's slice, `[P, n]` per sample.

    `central` is the central policy on the teachers' states (None without a central policy);
    `cross[i, j]` is teacher i on (a subsample of) partition j's states, `[P, P, m]`, and
    `cross_own[j]` teacher j on that same subsample, `[P, m]` (both only when the coupling
    `needs_cross`, else None). `advantages` are already normalised as PPO's surrogate uses them.
    """

    teacher: Distribution  # pi_i on its own states [P, n]
    log_ratio: jax.Array  # log pi_i / pi_i,old [P, n]
    central: Distribution | None  # pi_c on the same states [P, n]
    central_log_ratio: jax.Array  # log pi_c / pi_i,old [P, n] (0 without a central policy)
    advantages: jax.Array  # [P, n], normalised
    weights: jax.Array  # rho_i [P]
    cross: Distribution | None  # [P, P, m]
    cross_own: Distribution | None  # [P, m]
    clip_eps: Any  # PPO's epsilon
    central_clip_eps: Any  # epsilon_c of the clipped central ratio


@dataclasses.dataclass(frozen=True)
class Coupling:
    """A coupling term: `fn(inputs) -> L_couple [P]`, to be minimised by the teachers only.

    `meaning` is what the logged metric `couple` holds for a method with this coupling.
    """

    name: str
    fn: Callable[[CouplingInputs], jax.Array]
    meaning: str
    needs_cross: bool = False  # every teacher on every partition's states (P^2 passes)


def _none(x: CouplingInputs) -> jax.Array:
    return jnp.zeros(x.weights.shape)


def _ratio_kl(x: CouplingInputs) -> jax.Array:
    return jax.vmap(losses.ratio_kl)(x.log_ratio, x.central_log_ratio)


def _closed_form_kl(x: CouplingInputs) -> jax.Array:
    return jax.vmap(losses.closed_form_kl)(x.teacher, x.central)


def _central_ratio_clip(x: CouplingInputs) -> jax.Array:
    return jax.vmap(losses.central_ratio_clip, in_axes=(0, 0, 0, None, None))(
        x.log_ratio, x.central_log_ratio, x.advantages, x.clip_eps, x.central_clip_eps)


def _dnc(x: CouplingInputs) -> jax.Array:
    # The paper's local loss is surrogate_i + alpha rho_i sum_j rho_j (...): the rho_i factor
    # is part of the penalty (the teacher's whole loss is rho_i-weighted too, but each
    # teacher's step is clipped and Adam-normalised on its own, which cancels that weight).
    return x.weights * losses.dnc_coupling(x.cross_own, x.cross, x.weights)


NONE = Coupling("none", _none, "0 (no coupling term)")
RATIO_KL = Coupling(
    "ratio-kl", _ratio_kl,
    "KL(pi_i || pi_c) on teacher states, estimated from the central likelihood ratio "
    "(losses.ratio_kl)")
CLOSED_FORM_KL = Coupling(
    "closed-form-kl", _closed_form_kl,
    "KL(pi_i || pi_c) on teacher states, closed form over actions (losses.closed_form_kl)")
CENTRAL_RATIO_CLIP = Coupling(
    "central-ratio-clip", _central_ratio_clip,
    "the surrogate gain beyond pi_i / pi_c in [1 - eps_c, 1 + eps_c] (losses.central_ratio_clip)")
DNC = Coupling(
    "dnc-pairwise", _dnc,
    "rho_i sum_j rho_j [KL(pi_i || pi_j) on s~pi_i + KL(pi_j || pi_i) on s~pi_j] "
    "(losses.dnc_coupling)", needs_cross=True)


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """What a method is. Every field is read by exactly one concern (named in its comment)."""

    name: str
    summary: str  # one line: the README's and --help's description
    reference: str = ""
    # update, model, evaluator: whether there is a central policy to distil into at all
    has_central: bool = True
    # model: teacher i acts with the Boltzmann combination of alpha h_c(s) and beta f_i(s)
    # (Distral 2-column), so the central network gets every teacher's PPO gradient
    shares_central: bool = False
    coupling: Coupling = NONE  # update: alpha * L_couple_i in teacher i's loss
    coupling_coef: float = 0.0  # config: alpha when `coupling_coef` is not set
    # trainer: Distral's regularised reward r + (alpha/beta) log pi_c - (1/beta) log pi_i
    regularised_reward: bool = False
    discounted_distill: bool = False  # trainer: gamma^t weights on the distillation samples
    divergence: str = "kl"  # config: the distillation divergence of `divergence = auto`
    reset_allowed: bool = True  # config: DnC's periodic reset of teachers to the central policy
    single_teacher: bool = False  # config: one teacher over the whole space (P = 1)

    @property
    def own_central(self) -> bool:
        """A central network apart from the teachers': what the distillation tail and noise
        injection need (teachers frozen apart from it; steps that train only it)."""
        return self.has_central and not self.shares_central


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Make a method available by name to the config, the CLI and the evaluator."""
    METHODS[spec.name] = spec
    return spec


def get(name: str) -> MethodSpec:
    """The spec of method `name` (a config is validated first, so the name is known)."""
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method `{name}`; valid: {sorted(METHODS)}") from None


def names() -> tuple[str, ...]:
    return tuple(METHODS)


register(MethodSpec(
    name="independent", reference="Ghosh et al. 2018, unconstrained DnC",
    summary="teachers uncoupled; the central policy learns by distillation only"))
register(MethodSpec(
    name="central", reference="Ghosh et al. 2018, centralized DnC",
    summary="alpha KL(pi_i || sg pi_c) on teacher states, a one-sample estimate from the "
            "central likelihood ratio pi_c / pi_i,old", coupling=RATIO_KL, coupling_coef=0.01))
register(MethodSpec(
    name="central-kl", reference="Ghosh et al. 2018, centralized DnC (closed-form KL)",
    summary="alpha KL(pi_i || sg pi_c) on teacher states, in closed form over actions",
    coupling=CLOSED_FORM_KL, coupling_coef=0.01))
register(MethodSpec(
    name="central-clip", reference="PPO's clipped ratio (Schulman et al. 2017), against pi_c",
    summary="PPO-style clip of pi_i / pi_c to [1 - eps_c, 1 + eps_c] on teacher samples "
            "(alpha = 1: the surrogate gains nothing beyond it)",
    coupling=CENTRAL_RATIO_CLIP, coupling_coef=1.0))
register(MethodSpec(
    name="dnc", reference="Ghosh et al. 2018",
    summary="alpha rho_i sum_j rho_j [KL(pi_i || sg pi_j) on s~pi_i + KL(sg pi_j || pi_i) on "
            "s~pi_j] (pairwise)", coupling=DNC, coupling_coef=0.01))
register(MethodSpec(
    name="distral", reference="Teh et al. 2017, Distral KL+ent 1-column",
    summary="regularised reward r + (alpha/beta) log pi_c - (1/beta) log pi_i; gamma^t-weighted "
            "maximum-likelihood distillation", regularised_reward=True,
    discounted_distill=True, divergence="nll"))
register(MethodSpec(
    name="distral2col", reference="Teh et al. 2017, Distral KL+ent 2-column",
    summary="teacher = Boltzmann policy of alpha h_c(s) + beta f_i(s) (shared central column); "
            "regularised reward and gamma^t-weighted maximum-likelihood distillation",
    shares_central=True, regularised_reward=True, discounted_distill=True, divergence="nll",
    reset_allowed=False))
register(MethodSpec(
    name="ppo", reference="Schulman et al. 2017",
    summary="one PPO policy over the whole context space (no central policy)",
    has_central=False, reset_allowed=False, single_teacher=True))
