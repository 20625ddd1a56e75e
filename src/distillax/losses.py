"""Loss terms: PPO, value, entropy, couplings and distillation. Pure; each returns a scalar.

Shapes: one teacher's minibatch has `[n]` samples (vmapped over partitions by the update).
Gradient paths are part of the contract: distillation stops the gradient into the teacher
(its target); every coupling stops the gradient into the central policy (and, for DnC's
pairwise term, into the other teachers). Which coupling a method uses is its spec's
(`methods.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from distillax.distributions import Distribution, stop_gradient


def ppo_clip_loss(log_ratio: jax.Array, advantages: jax.Array, clip_eps: float) -> jax.Array:
    """Clipped surrogate, to minimise: `-mean(min(r A, clip(r, 1-eps, 1+eps) A))`, `[n]`."""
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return -jnp.mean(jnp.minimum(ratio * advantages, clipped * advantages))


def value_loss(value: jax.Array, old_value: jax.Array, returns: jax.Array,
               clip_eps: float) -> jax.Array:
    """Clipped value loss `0.5 mean(max((v - R)^2, (v_clip - R)^2))`, all `[n]`."""
    v_clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    return 0.5 * jnp.mean(jnp.maximum((value - returns) ** 2, (v_clipped - returns) ** 2))


def ratio_kl(log_ratio: jax.Array, log_ratio_central: jax.Array) -> jax.Array:
    """KL(pi_i || sg pi_c) on samples a ~ pi_i,old, from the two likelihood ratios `[n]`.

    With r_i = pi_i/pi_i,old and r_c = pi_c/pi_i,old (the central likelihood ratio),
    KL(pi_i || pi_c) = E_{pi_i,old}[ r_i (log r_i - log r_c) ], an unbiased estimate whose
    gradient reaches the teacher only (r_c is stopped). One sample per state: unbiased, but
    noisy where `closed_form_kl` gives the inner expectation exactly.
    """
    log_rc = jax.lax.stop_gradient(log_ratio_central)
    return jnp.mean(jnp.exp(log_ratio) * (log_ratio - log_rc))


def closed_form_kl(teacher: Distribution, central: Distribution) -> jax.Array:
    """`mean_s KL(pi_i(.|s) || sg pi_c(.|s))` over the teacher's `[n]` states, closed form.

    The same quantity as `ratio_kl`, with the expectation over actions taken exactly
    (categorical sum, Gaussian formula) instead of from the one sampled action: the states
    are still samples of pi_i,old's state distribution. Only the teacher gets a gradient.
    """
    return jnp.mean(teacher.kl(stop_gradient(central)))


def central_ratio_clip(log_ratio: jax.Array, log_ratio_central: jax.Array,
                       advantages: jax.Array, clip_eps: float,
                       central_clip_eps: float) -> jax.Array:
    """PPO's clip, with the central policy in place of the old one: `[n]` samples -> scalar.

    With r = pi_i/pi_i,old, w = pi_c/pi_i,old (stopped) and rho_c = r / w = pi_i/pi_c, PPO's
    per-sample surrogate is m1 = min(r A, clip(r, 1 +- eps) A). The same surrogate with the
    ratio to the central policy clipped is m2 = clip(rho_c, 1 +- eps_c) w A, which equals r A
    while rho_c is inside [1 - eps_c, 1 + eps_c]. This term is

        L = mean( max(0, m1 - m2) ) >= 0,

    the surrogate gain that lies beyond the central trust region. With weight alpha = 1,
    `-mean(m1) + L = -mean(min(m1, m2))`: PPO's pessimistic bound over both clips, so the
    surrogate gives a teacher no reason to move pi_i/pi_c outside [1 - eps_c, 1 + eps_c]
    (exactly as PPO's clip does for pi_i/pi_i,old); alpha > 1 pushes it back, by (alpha - 1)
    times the surrogate's gradient. Inside the range it is 0 with zero gradient. The central
    policy gets no gradient (w is stopped); `advantages` are the normalised ones of `m1`.
    """
    ratio = jnp.exp(log_ratio)
    w = jnp.exp(jax.lax.stop_gradient(log_ratio_central))
    m1 = jnp.minimum(ratio * advantages,
                     jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages)
    rho_c = jnp.exp(log_ratio - jax.lax.stop_gradient(log_ratio_central))
    m2 = jnp.clip(rho_c, 1.0 - central_clip_eps, 1.0 + central_clip_eps) * w * advantages
    return jnp.mean(jnp.maximum(0.0, m1 - m2))


def distill_loss(teacher: Distribution, central: Distribution, action: jax.Array,
                 weight: jax.Array, divergence: str) -> jax.Array:
    """One teacher's distillation loss on its `[n]` states, per-sample `weight [n]`.

    `kl`: KL(sg pi_i || pi_c) over the full distribution (closed form); `nll`: -log pi_c of
    the teacher's sampled action (Distral's maximum likelihood, with gamma^t weights);
    `mse`: squared error between central and teacher logits (categorical) or means
    (Gaussian), summed over action dims. The teacher is always the stopped target.
    """
    target = stop_gradient(teacher)
    if divergence == "kl":
        per_sample = target.kl(central)
    elif divergence == "nll":
        per_sample = -central.log_prob(action)
    elif divergence == "mse":
        per_sample = jnp.sum((central.location - target.location) ** 2, axis=-1)
    else:
        raise ValueError(f"unknown divergence `{divergence}`; valid: kl, nll, mse")
    return jnp.mean(weight * per_sample)


def feature_loss(prediction: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
    """Actor-Mimic's feature regression for one teacher: `mean(weight * |f_i(h_c) - sg h_i|^2)`
    over `[n]` states; `prediction`, `target` `[n, hidden]`, `weight [n]`. The teacher's
    features are the stopped target; the gradient reaches the map and the central network."""
    err = prediction - jax.lax.stop_gradient(target)
    return jnp.mean(weight * jnp.sum(err**2, axis=-1))


def dnc_coupling(own: Distribution, cross: Distribution, weights: jax.Array) -> jax.Array:
    """DnC's pairwise sum for every teacher i (Ghosh et al. 2018), `[P]`:

        D_i = sum_j rho_j ( E_{s~pi_i}[KL(pi_i || sg pi_j)] + E_{s~pi_j}[KL(sg pi_j || pi_i)] )

    (the method's coupling is rho_i D_i: `methods.DNC`). `own`: each teacher on its own
    states `[P, n]`; `cross[i, j]`: teacher i on partition j's states `[P, P, n]` (the same
    states as `own[j]`); `weights [P]`: rho. Gradients reach teacher i only through pi_i.
    """
    cross_sg, own_sg = stop_gradient(cross), stop_gradient(own)
    own_i = jax.tree.map(lambda x: x[:, None], own)  # [i, 1]: pi_i on s ~ pi_i
    j_on_i = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), cross_sg)  # [i, j]: pi_j on s ~ pi_i
    own_j = jax.tree.map(lambda x: x[None], own_sg)  # [1, j]: pi_j on s ~ pi_j
    forward = jnp.mean(own_i.kl(j_on_i), axis=-1)  # [i, j] E_{s~pi_i} KL(pi_i || pi_j)
    reverse = jnp.mean(own_j.kl(cross), axis=-1)  # [i, j] E_{s~pi_j} KL(pi_j || pi_i)
    return jnp.sum(weights[None, :] * (forward + reverse), axis=1)


def distral_reward(reward: jax.Array, central_log_prob: jax.Array,
                   teacher_log_prob: jax.Array, alpha: float, beta: float) -> jax.Array:
    """Distral's entropy-regularised reward `r + (alpha/beta) log pi_c - (1/beta) log pi_i`.

    `reward` is the environment's, in its own units: the trainer multiplies the whole
    regularised reward by `reward_scale`, so the scale changes no trade-off and beta keeps
    its meaning (the inverse temperature against the task's reward).
    """
    return reward + (alpha / beta) * central_log_prob - teacher_log_prob / beta


def normalize(x: jax.Array, axis_name: str | None = None) -> jax.Array:
    """`(x - mean) / (std + 1e-8)`; with `axis_name`, moments over every device's shard."""
    mean, sq = jnp.mean(x), jnp.mean(x**2)
    if axis_name is not None:
        mean, sq = jax.lax.pmean((mean, sq), axis_name)
    return (x - mean) / (jnp.sqrt(jnp.maximum(sq - mean**2, 0.0)) + 1e-8)


@struct.dataclass
class TeacherTerms:
    """The PPO terms of one teacher's minibatch (scalars, or `[P]` when vmapped)."""

    loss: jax.Array  # L_clip + c_v L_value - c_ent H (the coupling is added by the update)
    clip: jax.Array
    value: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array  # E[(r - 1) - log r], the usual PPO diagnostic
    clip_frac: jax.Array


def teacher_loss(dist: Distribution, value: jax.Array, action: jax.Array,
                 old_log_prob: jax.Array, old_value: jax.Array, advantages: jax.Array,
                 returns: jax.Array, *, clip_eps: float, vf_coef: float,
                 ent_coef: float) -> TeacherTerms:
    """One teacher's PPO loss on its minibatch slice (all per-sample arrays `[n]`).

    `advantages` are already normalised (`normalize`, over every device's shard). The
    coupling to the central policy or the other teachers is not here: it is the method's
    (`methods.MethodSpec.coupling`), added once in `update.loss_fn`.
    """
    log_ratio = dist.log_prob(action) - old_log_prob
    clip = ppo_clip_loss(log_ratio, advantages, clip_eps)
    v = value_loss(value, old_value, returns, clip_eps)
    ent = jnp.mean(dist.entropy())
    return TeacherTerms(
        loss=clip + vf_coef * v - ent_coef * ent, clip=clip, value=v, entropy=ent,
        approx_kl=jnp.mean(jnp.expm1(log_ratio) - log_ratio),
        clip_frac=jnp.mean(jnp.abs(jnp.exp(log_ratio) - 1.0) > clip_eps),
    )
