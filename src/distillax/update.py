"""The fused update: E epochs x M minibatches of one gradient step on (teachers, central).

Each minibatch holds every partition's slice `[P, n, ...]`. One `jax.value_and_grad` over
`Params(teacher [P, ...], central)` of

    L = sum_i rho_i [ L_clip_i + c_v L_value_i - c_ent H_i + alpha L_couple_i ]
        + lambda sum_i rho_i ( E_{s~pi_i} D(sg pi_i, pi_c) + beta L_feature_i )

(L_couple_i: the method's coupling, `methods.MethodSpec.coupling`; D: the distillation
divergence; L_feature_i, Actor-Mimic's feature regression, only with `feature_coef = beta > 0`)

where the teachers' forward pass on the minibatch is shared by the PPO terms, the central
likelihood ratio, the coupling and the distillation target. Under `shard_map` the loss is
`pmean`-ed over the data axis before differentiation: the gradient of a replicated parameter inside
`shard_map` is already summed over devices, so this gives the global-mean gradient.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from distillax import losses
from distillax.methods import CouplingInputs
from distillax.model import Model
from distillax.networks import map_features
from distillax.normalizer import RunningStats
from distillax.rollout import acting_envs


@struct.dataclass
class Params:
    teacher: Any  # leaves [P, ...]
    central: Any


@struct.dataclass
class OptState:
    teacher: Any
    central: Any


@struct.dataclass
class Batch:
    """Training data, every leaf `[P, T, B, ...]` (or `[P, n, ...]` for a minibatch)."""

    obs: jax.Array
    context: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantages: jax.Array
    returns: jax.Array
    distill_weight: jax.Array  # per-sample weight of L_distill (gamma^t for distral, else 1)
    # pi_c as the update found it, on the teachers' samples: the anchor of every coupling to
    # the central policy, frozen through the update as pi_i,old is (None without a central)
    central: Any
    central_log_prob: jax.Array  # log pi_c(a|s,c) of it (log pi_i,old without a central)
    # With a memory (else None): `[P, T, B]` the steps that begin an episode (`rollout.
    # episode_starts`), and each recurrent role's memory at the rollout's first step, `[P, B,
    # M]`: what the update recomputes the states from (whole sequences per minibatch)
    reset: Any = None
    teacher_start: Any = None
    central_start: Any = None


# What the numerical guard watches in the update, in the order a fault propagates.
UPDATE_TERMS = ("clip", "value", "entropy", "couple", "distill", "grad", "params")


@struct.dataclass
class UpdateMetrics:
    loss: jax.Array  # the total minimised loss L
    teacher: losses.TeacherTerms  # PPO terms, each field [P]
    couple: jax.Array  # [P] L_couple_i, the term alpha multiplies (its meaning: the method's)
    central_log_ratio: jax.Array  # [P] mean log pi_c / pi_i,old on teacher samples
    distill: jax.Array  # [P] E D(pi_i, pi_c) on teacher states (the divergence's loss)
    feature: jax.Array  # [P] feature regression error L_feature_i (0 when feature_coef = 0)
    teacher_grad_norm: jax.Array  # [P] before clipping, of rho_i-weighted terms
    # [len(UPDATE_TERMS)] bool: the terms that were non-finite in the first minibatch step
    # where any was (all False while everything is finite); `params` is checked after the
    # last step. Read on the host once per report
    nonfinite: jax.Array


def all_finite(tree: Any) -> jax.Array:
    """True when every element of every leaf of `tree` is finite: one scalar, on device."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def clip_per_teacher(grads: Any, max_norms: jax.Array) -> tuple[Any, jax.Array]:
    """Clip each teacher's slice of stacked grads `[P, ...]` to its own norm `max_norms [P]`.

    Teachers are independent learners, so one teacher's large gradient must not shrink
    another's step, as a global-norm clip over all of them would.
    """
    sq = sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in jax.tree.leaves(grads))
    norms = jnp.sqrt(sq)
    scale = jnp.minimum(1.0, max_norms / (norms + 1e-12))
    return jax.tree.map(lambda g: g * scale.reshape((-1,) + (1,) * (g.ndim - 1)), grads), norms


def cross_rows(key: jax.Array, steps: int, size: int) -> jax.Array:
    """`size` of a minibatch's `steps` time rows, uniformly without replacement: `[size]`."""
    return jax.random.choice(key, steps, (size,), replace=False)


def take_rows(x: jax.Array, rows: jax.Array, steps: int) -> jax.Array:
    """The samples of time rows `rows` of a minibatch leaf: `[P, steps * B, ...]` (time-major
    within a partition, as `update` builds minibatches) -> `[P, len(rows) * B, ...]`."""
    P, n = x.shape[:2]
    x = x.reshape((P, steps, n // steps) + x.shape[2:])[:, rows]
    return x.reshape((P, -1) + x.shape[3:])


def _forward(model: Model, params: Params, mb: Batch, teacher_stats: RunningStats,
             central_stats: RunningStats, with_central: bool) -> tuple[Any, ...]:
    """The teachers' pass over a minibatch and, `with_central`, the central policy's (else
    None): (teacher dist, value, [teacher hidden] with `feature_coef`, central output, the
    minibatch), every per-sample leaf `[P, n]`.

    With a memory the minibatch holds whole sequences `[P, T, b]`: the recurrent roles'
    states are recomputed along them from the stored start states, with the episode resets
    (backpropagation through the whole rollout), then everything is flattened time-major."""
    c = model.config
    features = c.feature_coef > 0
    acting = model.acting_params(params.teacher, params.central)
    central = None
    if not c.has_memory:
        dist, value, *t_hidden = model.teachers(acting, mb.obs, mb.context, teacher_stats,
                                                central_stats, with_features=features)
        if model.has_central and with_central:
            central = model.central_dist(params.central, mb.obs, mb.context, central_stats,
                                         with_features=features)
        return dist, value, t_hidden, central, mb
    dist, value, *t_hidden = model.teacher_sequences(acting, mb.teacher_start, mb.obs,
                                                     mb.context, mb.reset, teacher_stats,
                                                     with_features=features,
                                                     central_stats=central_stats)
    if model.has_central and with_central:
        _, central = model.central_sequences(params.central, mb.central_start, mb.obs,
                                             mb.context, mb.action, mb.reset, central_stats,
                                             with_features=features)
    mb = mb.replace(reset=None, teacher_start=None, central_start=None)
    flat = lambda x: x.reshape(x.shape[:1] + (-1,) + x.shape[3:])  # noqa: E731
    return jax.tree.map(flat, (dist, value, t_hidden, central, mb))


def _distillation(model: Model, central_params: Any, mb: Batch, dist: Any, t_hidden: list,
                  central: Any) -> tuple[jax.Array, jax.Array]:
    """`[P]` each: the distillation divergence of the central policy (`central`: its
    distribution on the minibatch's states, with `feature_coef` and its hidden layer) from
    each teacher `dist`, and (with `feature_coef`) Actor-Mimic's feature regression from the
    teachers' last hidden layers `t_hidden`."""
    c = model.config
    features = c.feature_coef > 0
    feature = jnp.zeros(mb.distill_weight.shape[:1])  # [P]
    if features:
        central, c_hidden = central
        feature = jax.vmap(losses.feature_loss)(
            map_features(central_params, c_hidden), t_hidden[0], mb.distill_weight)
    distill = jax.vmap(losses.distill_loss, in_axes=(0, 0, 0, 0, None))(
        dist, central, mb.action, mb.distill_weight, c.resolved_divergence)
    return distill, feature


def _cross(model: Model, teacher_params: Any, mb: Batch, rows: jax.Array | None,
           teacher_stats: RunningStats) -> tuple[Any, Any]:
    """Every teacher on every teacher's states, `[P, P, m]` (DnC's pairwise terms), on the
    minibatch's time `rows` (None: all of them), and its diagonal `[P, m]`: teacher j on its
    own sampled states."""
    steps = model.config.minibatch_steps
    pick = (lambda x: x) if rows is None else (lambda x: take_rows(x, rows, steps))
    cross = model.cross_policies(teacher_params, pick(mb.obs), pick(mb.context), teacher_stats)
    P = jax.tree.leaves(teacher_params)[0].shape[0]
    return cross, jax.tree.map(lambda x: x[jnp.arange(P), jnp.arange(P)], cross)


def loss_fn(params: Params, model: Model, mb: Batch, *, teacher_stats: RunningStats,
            central_stats: RunningStats, weights: jax.Array, axis_name: str | None,
            distill_coef: jax.Array | float | None = None, rows: jax.Array | None = None,
            with_central: bool = True) -> tuple[jax.Array, UpdateMetrics]:
    """Total loss on a minibatch `[P, n, ...]`; `weights [P]` are rho_i. The arguments after
    the minibatch are keyword-only (several share a type: a position could swap them).

    Couplings to the central policy read `mb.central`, pi_c as the update began (stopped, as
    pi_i,old is). The central policy's own forward pass is for distillation only: without
    `with_central` (the epochs that do not train it) it is not computed, nor the
    distillation and feature terms (0).

    `distill_coef` overrides the config's lambda (the schedule's value this epoch). `rows`:
    the minibatch's time rows on which a coupling that `needs_cross` (DnC's P^2 passes) is
    estimated, `[m]` of its T/M (`cross_rows`); None: all of them. Each of its expectations
    is a mean over states, so its mean over a uniform subsample is an unbiased estimate of
    the mean over the minibatch, and so of the expectation (`tests/test_update.py`).
    Rows, not samples: every device holds the same time rows of its own envs, so a
    sharded run subsamples exactly as one device does.
    """
    c, spec = model.config, model.config.spec
    lam = c.distill_coef if distill_coef is None else distill_coef
    dist, value, t_hidden, central, mb = _forward(model, params, mb, teacher_stats,
                                                  central_stats, with_central)
    zeros = jnp.zeros(weights.shape)
    distill, feature = zeros, zeros
    if central is not None:
        distill, feature = _distillation(model, params.central, mb, dist, t_hidden, central)
    # The teachers' own terms read only the steps they took themselves: with noise
    # injection, the noisy envs' steps are not pi_i,old's samples and train the central only
    dist, value, mb = jax.tree.map(lambda x: acting_envs(x, c.noise_every, 1),
                                   (dist, value, mb))
    adv = jax.vmap(lambda a: losses.normalize(a, axis_name))(mb.advantages)
    terms = jax.vmap(lambda *a: losses.teacher_loss(
        *a, clip_eps=c.clip_eps, vf_coef=c.vf_coef, ent_coef=c.ent_coef))(
        dist, value, mb.action, mb.log_prob, mb.value, adv, mb.returns)
    cross = cross_own = None
    if spec.coupling.needs_cross:
        cross, cross_own = _cross(model, params.teacher, mb, rows, teacher_stats)
    # The one place where a method's coupling enters the loss.
    couple = spec.coupling.fn(CouplingInputs(
        teacher=dist, log_ratio=dist.log_prob(mb.action) - mb.log_prob, central=mb.central,
        central_log_ratio=mb.central_log_prob - mb.log_prob, advantages=adv, weights=weights,
        cross=cross, cross_own=cross_own, clip_eps=c.clip_eps,
        central_clip_eps=c.central_clip_eps))
    total = (jnp.sum(weights * (terms.loss + c.alpha * couple))
             + lam * jnp.sum(weights * (distill + c.feature_coef * feature)))
    central_log_ratio = jnp.mean(mb.central_log_prob - mb.log_prob, axis=1)
    metrics = (terms, couple, central_log_ratio, distill, feature)
    if axis_name is not None:
        total = jax.lax.pmean(total, axis_name)
        metrics = jax.lax.pmean(metrics, axis_name)
    terms, couple, central_log_ratio, distill, feature = metrics
    return total, UpdateMetrics(
        loss=total, teacher=terms, couple=couple, central_log_ratio=central_log_ratio,
        distill=distill, feature=feature, teacher_grad_norm=zeros,
        nonfinite=jnp.zeros(len(UPDATE_TERMS), bool))


def minibatch_step(model: Model, params: Params, opt: OptState, mb: Batch, *,
                   teacher_stats: RunningStats, central_stats: RunningStats, weights: jax.Array,
                   axis_name: str | None, distill_coef: jax.Array | float | None = None,
                   train_central: bool = True, rows: jax.Array | None = None
                   ) -> tuple[Params, OptState, UpdateMetrics]:
    """One gradient step of teachers and central policy on one minibatch (the arguments after
    it keyword-only, as `loss_fn`'s).

    With `train_central` False (static) the central policy is neither evaluated nor stepped:
    its params and optimizer state are left as they are (Adam would otherwise keep moving
    them on momentum alone).
    """
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, model, mb, teacher_stats=teacher_stats, central_stats=central_stats,
        weights=weights, axis_name=axis_name, distill_coef=distill_coef, rows=rows,
        with_central=train_central)
    # Clip teacher i's gradient of rho_i * L_i at rho_i * max_grad_norm: the same as clipping
    # the gradient of its own loss at max_grad_norm, as a stand-alone PPO learner would.
    t_grads, norms = clip_per_teacher(grads.teacher, weights * model.config.max_grad_norm)
    t_upd, t_opt = model.teacher_tx.update(t_grads, opt.teacher, params.teacher)
    central, c_opt = params.central, opt.central
    if model.has_central and train_central:  # (ppo's unused central network never steps)
        c_upd, c_opt = model.central_tx.update(grads.central, opt.central, params.central)
        central = optax.apply_updates(params.central, c_upd)
    params = Params(teacher=optax.apply_updates(params.teacher, t_upd), central=central)
    opt = OptState(teacher=t_opt, central=c_opt)
    # The gradient check reads norms (the teachers' are computed for clipping anyway); a
    # norm overflows only for gradients past ~1e19, a fault too. Params are checked once per
    # update (in `update`): a non-finite step shows in the next step's loss terms anyway.
    t = metrics.teacher
    grad_norm = jnp.sum(norms) + optax.tree.norm(grads.central)
    finite = [all_finite(x) for x in (t.clip, t.value, t.entropy, metrics.couple,
                                      (metrics.distill, metrics.feature))]
    finite += [jnp.isfinite(grad_norm), jnp.array(True)]
    return params, opt, metrics.replace(teacher_grad_norm=norms,
                                        nonfinite=jnp.logical_not(jnp.stack(finite)))


def split_minibatches(x: jax.Array, perm: jax.Array, M: int) -> jax.Array:
    """`[P, T, B, ...] -> [M, P, (T/M) * B, ...]`: the time axis permuted by `perm [T]` and
    cut into M minibatches, each keeping every env (time-major within a partition)."""
    T = perm.shape[0]
    x = jnp.take(x, perm, axis=1)
    x = x.reshape(x.shape[:1] + (M, T // M) + x.shape[2:])
    x = jnp.moveaxis(x, 1, 0)
    return x.reshape(x.shape[:2] + (-1,) + x.shape[4:])


def env_minibatches(key: jax.Array, num_envs: int, M: int, axis_name: str | None
                    ) -> jax.Array:
    """`[M, num_envs / M]`: the local envs of each of M minibatches (with a memory, which
    keep whole sequences). The envs form groups of M consecutive ones, and each group's
    members go one to each minibatch in an order drawn for that group from `key` folded with
    its global index (the device's place on `axis_name` counted in): so the minibatches of a
    sharded run are exactly the device-wise pieces of the 1-device minibatches, as with the
    time split, whenever M divides each device's envs (`config.validate`)."""
    groups = num_envs // M
    first = 0 if axis_name is None else jax.lax.axis_index(axis_name) * groups
    order = jax.vmap(lambda g: jax.random.permutation(jax.random.fold_in(key, g), M))(
        first + jnp.arange(groups))  # [groups, M]
    return (jnp.arange(groups)[:, None] * M + order).T


def split_env_minibatches(batch: Batch, envs: jax.Array) -> Batch:
    """`batch` leaves `[P, T, B, ...]` (start memories `[P, B, ...]`) -> `[M, P, T, b, ...]`
    (`[M, P, b, ...]`): minibatch m holds the envs `envs[m]` (`env_minibatches`)."""
    starts = (batch.teacher_start, batch.central_start)
    rest = batch.replace(teacher_start=None, central_start=None)

    def split(x, axis):
        return jnp.moveaxis(jnp.take(x, envs, axis=axis), axis, 0)

    rest = jax.tree.map(lambda x: split(x, 2), rest)
    teacher_start, central_start = jax.tree.map(lambda x: split(x, 1), starts)
    return rest.replace(teacher_start=teacher_start, central_start=central_start)


def minibatches(c: Any, batch: Batch, key: jax.Array, axis_name: str | None) -> Batch:
    """An epoch's M minibatches of `batch [P, T, B, ...]`, leaves `[M, P, ...]`: a random
    permutation of the time axis cut in M (`split_minibatches`), or with a memory M sets of
    envs with whole sequences (`env_minibatches`). `c`: the config."""
    M = c.num_minibatches
    if c.has_memory:
        return split_env_minibatches(batch, env_minibatches(key, batch.obs.shape[2], M,
                                                            axis_name))
    perm = jax.random.permutation(key, c.num_steps)
    return jax.tree.map(lambda x: split_minibatches(x, perm, M), batch)


def first_fault(nonfinite: jax.Array, params: Params) -> jax.Array:
    """The guard's flags of an update `[len(UPDATE_TERMS)]`: the terms of the first faulty
    step (later steps inherit its NaNs everywhere), from `nonfinite [E, M, terms]`; all False
    if every step was finite, and then whether the final `params` are."""
    flags = nonfinite.reshape(-1, len(UPDATE_TERMS))  # [E * M, terms], in step order
    first = flags[jnp.argmax(jnp.any(flags, axis=1))]
    params_bad = jnp.zeros_like(first).at[UPDATE_TERMS.index("params")].set(
        jnp.logical_not(all_finite(params)))
    return jnp.where(jnp.any(first), first, params_bad)


def update(model: Model, params: Params, opt: OptState, batch: Batch, *,
           teacher_stats: RunningStats, central_stats: RunningStats, weights: jax.Array,
           key: jax.Array, axis_name: str | None, distill_coef: jax.Array | float | None = None
           ) -> tuple[Params, OptState, UpdateMetrics]:
    """E epochs x M minibatches over `batch [P, T, B, ...]` (the arguments after it
    keyword-only, as `loss_fn`'s); metrics averaged over all steps, except `nonfinite`: the
    terms of the first step with a non-finite one.

    Minibatches split a random permutation of the time axis (shared by all envs and all
    devices, from a replicated key), each keeping every env: so the minibatches of a
    sharded run are exactly the device-wise pieces of the 1-device minibatches. With a
    memory they split the env axis instead (`env_minibatches`), each keeping whole
    sequences, along which `loss_fn` recomputes the recurrent states.
    Distillation is active in the first `distill_epochs` epochs (0: all); the central policy
    takes steps in the first `config.central_epochs` (those, or all when the teachers share
    its network), which is what its learning-rate schedule counts. `distill` and `feature`
    are averaged over those epochs.
    """
    c = model.config
    M = c.num_minibatches
    lam = c.distill_coef if distill_coef is None else distill_coef

    needs_cross = c.spec.coupling.needs_cross

    def epoch(carry, x, train_central):
        key, index = x
        lam_e = jnp.where(index < c.active_distill_epochs, lam, 0.0)
        rows = None  # [M, cross_steps]: each minibatch's time rows for the cross terms
        if needs_cross:  # (a key of its own: other methods' streams are unchanged)
            keys = jax.random.split(jax.random.fold_in(key, 1), M)
            rows = jax.vmap(lambda k: cross_rows(k, c.minibatch_steps,
                                                 c.resolved_cross_steps))(keys)

        def step(carry, x):
            (params, opt), (mb, mb_rows) = carry, x
            params, opt, metrics = minibatch_step(
                model, params, opt, mb, teacher_stats=teacher_stats,
                central_stats=central_stats, weights=weights, axis_name=axis_name,
                distill_coef=lam_e, train_central=train_central, rows=mb_rows)
            return (params, opt), metrics

        return jax.lax.scan(step, carry, (minibatches(c, batch, key, axis_name), rows))

    # The first `central_epochs` epochs train the central policy too; the others (static: two
    # scans) skip its forward and backward passes entirely, so `distill_epochs` saves time.
    xs = (jax.random.split(key, c.update_epochs), jnp.arange(c.update_epochs))
    E_c = c.central_epochs
    carry, metrics = jax.lax.scan(lambda cr, x: epoch(cr, x, True), (params, opt),
                                  jax.tree.map(lambda x: x[:E_c], xs))
    distill_metrics = (metrics.distill, metrics.feature)  # [E_c, M, P]: where they were taken
    if E_c < c.update_epochs:
        carry, rest = jax.lax.scan(lambda cr, x: epoch(cr, x, False), carry,
                                   jax.tree.map(lambda x: x[E_c:], xs))
        metrics = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), metrics, rest)
    params, opt = carry
    first = first_fault(metrics.nonfinite, params)
    metrics = jax.tree.map(lambda m: jnp.mean(m, axis=(0, 1)), metrics.replace(nonfinite=None))
    distill, feature = jax.tree.map(lambda m: jnp.mean(m, axis=(0, 1)), distill_metrics)
    return params, opt, metrics.replace(nonfinite=first, distill=distill, feature=feature)
