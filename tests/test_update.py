"""The fused update: gradient paths, vmapped teachers vs a loop, per-teacher clipping, a step.

Small sizes throughout: 2 teachers, an 8-unit hidden layer, minibatches of 8 samples.
"""

import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillax import losses
from distillax import update as upd
from distillax.config import Config, validate
from distillax.model import build_model
from distillax.normalizer import init_stats

P, N = 2, 8  # teachers, samples per teacher in a minibatch
WEIGHTS = jnp.array([0.3, 0.7])  # rho_i
STATIC = ("model", "axis_name")  # what a jitted loss_fn or update is specialised on


def _on(ts, cs, weights=WEIGHTS):
    """The keyword arguments that `loss_fn`, `minibatch_step` and `update` share, on one
    device (no mesh axis)."""
    return dict(teacher_stats=ts, central_stats=cs, weights=weights, axis_name=None)


def _config(**kw) -> Config:
    base = dict(hidden_sizes=(8,), num_envs=8, num_steps=8, partitions=P, kmeans_samples=1000,
                update_epochs=2, num_minibatches=2, coupling_coef=0.5, distill_coef=1.0)
    return validate(Config(**{**base, **kw}))


@functools.cache
def _model(**kw):
    return build_model(_config(**kw))


def _setup(model, seed, shape=(N,)):
    """(params, teacher stats, central stats, batch `[P, *shape, ...]`) for `model`.

    Data and params come from numpy (threefry-heavy jitted set-up takes seconds to compile
    on CPU). Params are N(0, 0.5^2) with the model's structure, so teachers and central
    differ clearly (the real init's 0.01-scaled last layer makes every policy near uniform).
    """
    rng = np.random.default_rng(seed)
    normal = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    shapes = jax.eval_shape(model.init_params, jax.random.key(0))
    teacher, central = jax.tree.map(lambda x: 0.5 * normal(*x.shape), shapes)
    params = upd.Params(teacher, central)
    env = model.env
    P_ = model.config.partitions
    t_stats = init_stats((P_, env.obs_dim))
    c_stats = init_stats((env.obs_dim,))
    obs = normal(P_, *shape, env.obs_dim)
    low, high = np.asarray(env.space.low), np.asarray(env.space.high)
    context = jnp.asarray(rng.uniform(low, high, size=(P_, *shape, env.space.dim)), jnp.float32)
    if env.discrete:
        action = jnp.asarray(rng.integers(0, env.action_dim, size=(P_, *shape)), jnp.int32)
    else:
        action = normal(P_, *shape, env.action_dim)
    acting = model.acting_params(params.teacher, params.central)
    dist, _ = jax.jit(model.teachers)(acting, obs, context, t_stats, c_stats)
    # stored log-probs: the current ones plus noise, so ratios fall on both sides of the clip
    log_prob = dist.log_prob(action) + 0.3 * normal(P_, *shape)
    central, central_log_prob = None, log_prob  # pi_c as the update begins (the trainer's)
    if model.has_central:
        central = jax.jit(model.central_dist)(params.central, obs, context, c_stats)
        central_log_prob = central.log_prob(action)
    batch = upd.Batch(
        obs=obs, context=context, action=action, log_prob=log_prob,
        value=normal(P_, *shape), advantages=normal(P_, *shape), returns=normal(P_, *shape),
        distill_weight=jnp.ones((P_, *shape)), central=central,
        central_log_prob=central_log_prob,
    )
    return params, t_stats, c_stats, batch


@functools.cache
def _grad_fn(model):
    """Jitted gradient of loss_fn with alpha and lambda as traced config leaves.

    The numeric coefficients are pytree leaves of the config, so one compiled program
    serves every value: comparing alpha = 0.5 with alpha = 0 (or lambda = 1 with 0) runs
    the same arithmetic, and a term that adds nothing leaves the gradient bit-for-bit equal.
    """
    def grads(params, mb, t_stats, c_stats, weights, alpha, lam):
        config = model.config.replace(coupling_coef=alpha, distill_coef=lam)
        m = dataclasses.replace(model, config=config)
        return jax.grad(upd.loss_fn, has_aux=True)(params, m, mb,
                                                   **_on(t_stats, c_stats, weights))[0]

    return jax.jit(grads)


def _grads(model, params, mb, t_stats, c_stats, weights=WEIGHTS, alpha=None, lam=None):
    c = model.config
    alpha = c.coupling_coef if alpha is None else alpha
    lam = c.distill_coef if lam is None else lam
    return _grad_fn(model)(params, mb, t_stats, c_stats, weights, jnp.float32(alpha),
                           jnp.float32(lam))


def _max_abs(tree) -> float:
    return max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(tree))


# --- gradient paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("task,method", [("cartpole", "central"),  # categorical
                                         ("pendulum", "central"),  # Gaussian
                                         ("cartpole", "dnc"),  # pairwise coupling
                                         ("pendulum", "central-kl"),  # closed form
                                         ("cartpole", "central-clip"),  # clipped ratio
                                         ("pendulum", "central-clip")])
def test_distillation_never_moves_teachers_and_coupling_never_moves_central(task, method):
    model = _model(task=task, method=method)  # alpha = 0.5, lambda = 1
    params, ts, cs, mb = _setup(model, 0)
    g_full = _grads(model, params, mb, ts, cs)
    g_no_distill = _grads(model, params, mb, ts, cs, lam=0.0)
    g_no_couple = _grads(model, params, mb, ts, cs, alpha=0.0)

    # distillation adds nothing to the teachers' gradient: bit-for-bit equal
    chex.assert_trees_all_equal(g_full.teacher, g_no_distill.teacher)
    # ... but it is what trains the central policy (so the check above can fail)
    assert _max_abs(g_full.central) > 1e-4
    # without distillation the central policy gets no gradient at all (couplings are stopped)
    chex.assert_trees_all_equal(g_no_distill.central, jax.tree.map(jnp.zeros_like,
                                                                   g_full.central))

    # the coupling adds nothing to the central gradient: bit-for-bit equal
    chex.assert_trees_all_equal(g_full.central, g_no_couple.central)
    # ... but it does change the teachers' gradient
    diff = jax.tree.map(lambda a, b: a - b, g_full.teacher, g_no_couple.teacher)
    assert _max_abs(diff) > 1e-5


def test_teacher_gradients_are_independent_across_teachers():
    """Teacher i's loss reaches only slice i of the stacked params (weights one-hot)."""
    model = _model()
    params, ts, cs, mb = _setup(model, 1)
    g = _grads(model, params, mb, ts, cs, weights=jnp.array([1.0, 0.0]))
    for leaf in jax.tree.leaves(g.teacher):
        assert float(jnp.max(jnp.abs(leaf[0]))) > 0.0
        np.testing.assert_array_equal(leaf[1], 0.0)


# --- feature distillation (Actor-Mimic) -------------------------------------------------------

@pytest.mark.parametrize("task,method", [("cartpole", "central"), ("pendulum", "central"),
                                         ("cartpole", "distral2col")])
def test_feature_distillation_is_an_explicit_loop_and_never_moves_teachers(task, method):
    """L_feature_i = mean_s |W_i h_c(s) + b_i - h_i(s)|^2 over teacher i's states, added to the
    loss as lambda * beta * sum_i rho_i L_feature_i; its gradient reaches the central network
    and the maps, never a teacher (distral2col: not even through the shared column's target)."""
    beta, lam = 0.25, 0.7
    on = _model(task=task, method=method, feature_coef=beta, distill_coef=lam)
    off = _model(task=task, method=method, distill_coef=lam)
    params, ts, cs, mb = _setup(on, 4)
    maps = params.central["params"]
    assert maps["feature_map_kernel"].shape == (P, 8, 8)

    expected = 0.0
    for i in range(P):
        x_c = on.central_input(mb.obs[i], mb.context[i], cs)
        _, h_c = on.central.apply(params.central, x_c, with_features=True)
        x_t = on.teacher_input(mb.obs, mb.context, ts)[i]
        teacher_i = jax.tree.map(lambda x, i=i: x[i], params.teacher)
        _, _, h_i = on.teacher.apply(teacher_i, x_t, with_features=True)
        pred = np.asarray(h_c) @ np.asarray(maps["feature_map_kernel"][i]) + np.asarray(
            maps["feature_map_bias"][i])
        expected += float(WEIGHTS[i]) * np.mean(np.sum((pred - np.asarray(h_i)) ** 2, -1))
    total = lambda m, p: upd.loss_fn(p, m, mb, **_on(ts, cs))  # noqa: E731
    without = {k: v for k, v in maps.items() if not k.startswith("feature_map")}
    loss_on, metrics = total(on, params)
    loss_off, _ = total(off, params.replace(central={"params": without}))
    np.testing.assert_allclose(float(loss_on - loss_off), lam * beta * expected, rtol=1e-5)
    np.testing.assert_allclose(float(jnp.sum(WEIGHTS * metrics.feature)), expected, rtol=1e-5)

    g = jax.grad(lambda p: jnp.sum(WEIGHTS * total(on, p)[1].feature))(params)
    chex.assert_trees_all_equal(g.teacher, jax.tree.map(jnp.zeros_like, g.teacher))
    for name in ("feature_map_kernel", "feature_map_bias", "pi"):
        assert _max_abs(g.central["params"][name]) > 1e-4, name


def test_feature_distillation_fits_the_maps():
    """A few steps on one minibatch (teachers all but frozen) cut the feature error 2x."""
    model = _model(method="central", feature_coef=1.0, learning_rate=1e-9, anneal_lr=False,
                   anneal_central_lr=False,
                   central_learning_rate=1e-2)
    params, ts, cs, mb = _setup(model, 5)
    opt = upd.OptState(model.teacher_tx.init(params.teacher),
                       model.central_tx.init(params.central))
    step = jax.jit(lambda p, o: upd.minibatch_step(model, p, o, mb, **_on(ts, cs)))
    errors = []
    for _ in range(40):
        params, opt, metrics = step(params, opt)
        errors.append(float(jnp.sum(WEIGHTS * metrics.feature)))
    assert errors[-1] < 0.5 * errors[0], errors


# --- vmapped teachers vs a loop ---------------------------------------------------------------

def test_vmapped_teacher_losses_equal_a_loop_over_teachers():
    model = _model()
    c = model.config
    params, ts, cs, mb = _setup(model, 2)
    total, metrics = jax.jit(upd.loss_fn, static_argnames=STATIC)(params, model, mb,
                                                                  **_on(ts, cs))
    chex.assert_tree_shape_prefix(metrics.teacher, (P,))
    chex.assert_shape(metrics.distill, (P,))

    t_in = model.teacher_input(mb.obs, mb.context, ts)
    c_in = model.central_input(mb.obs, mb.context, cs)
    expected_total = 0.0
    for i in range(P):
        p_i = jax.tree.map(lambda x, i=i: x[i], params.teacher)
        dist_i, value_i = model.teacher.apply(p_i, t_in[i])  # one un-vmapped teacher
        central_i = model.central.apply(params.central, c_in[i])
        adv_i = losses.normalize(mb.advantages[i])
        terms_i = losses.teacher_loss(
            dist_i, value_i, mb.action[i], mb.log_prob[i], mb.value[i], adv_i,
            mb.returns[i], clip_eps=c.clip_eps, vf_coef=c.vf_coef, ent_coef=c.ent_coef)
        # method `central`: L_couple_i = ratio_kl(log r_i, log r_c)
        couple_i = losses.ratio_kl(dist_i.log_prob(mb.action[i]) - mb.log_prob[i],
                                   central_i.log_prob(mb.action[i]) - mb.log_prob[i])
        distill_i = jnp.mean(dist_i.kl(central_i))
        chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], metrics.teacher), terms_i,
                                    rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(metrics.couple[i], couple_i, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(metrics.distill[i], distill_i, rtol=1e-5, atol=1e-7)
        expected_total += WEIGHTS[i] * (terms_i.loss + c.alpha * couple_i
                                        + c.distill_coef * distill_i)
        assert float(couple_i) != 0.0 and float(distill_i) > 0.0
    # L = sum_i rho_i [L_i + alpha L_couple_i + lambda distill_i]
    np.testing.assert_allclose(total, expected_total, rtol=1e-5)


def test_dnc_penalty_is_alpha_rho_i_sum_j_rho_j_as_in_the_paper():
    """DnC's local loss is surrogate_i + alpha rho_i sum_j rho_j (...) (Ghosh et al. 2018): in
    the total loss sum_i rho_i L_i the coupling adds alpha sum_i rho_i^2 D_i, with D_i the
    pairwise sum of `losses.dnc_coupling` (an explicit loop over teachers here)."""
    model = _model(method="dnc")  # alpha = 0.5
    params, ts, cs, mb = _setup(model, 6)
    loss = jax.jit(upd.loss_fn, static_argnames=STATIC)
    with_alpha, metrics = loss(params, model, mb, **_on(ts, cs))
    off = dataclasses.replace(model, config=model.config.replace(coupling_coef=0.0))
    without, _ = loss(params, off, mb, **_on(ts, cs))
    x = model.teacher_input(mb.obs, mb.context, ts)
    pol = lambda i, j: model.teacher.apply(jax.tree.map(lambda v: v[i], params.teacher),  # noqa: E731
                                           x[j], method=model.teacher.policy)
    D = [sum(float(WEIGHTS[j]) * (float(jnp.mean(pol(i, i).kl(pol(j, i))))
                                  + float(jnp.mean(pol(j, j).kl(pol(i, j)))))
             for j in range(P)) for i in range(P)]
    np.testing.assert_allclose(metrics.couple, [float(WEIGHTS[i]) * D[i] for i in range(P)],
                               rtol=1e-4)
    np.testing.assert_allclose(float(with_alpha - without),
                               0.5 * sum(float(WEIGHTS[i]) ** 2 * D[i] for i in range(P)),
                               rtol=1e-4)


def test_dnc_cross_terms_on_a_row_subsample_are_unbiased_with_the_same_gradient_paths():
    """The mean over every subset of m of a minibatch's T/M time rows of the subsampled
    coupling (and of its gradient) is the full coupling (and its gradient): the estimate is
    unbiased. T/M = 4 rows, m = 2: all 6 subsets enumerated."""
    import itertools

    model = _model(method="dnc", num_steps=8, num_minibatches=2)  # T/M = 4
    params, ts, cs, mb = _setup(model, 7, shape=(4 * 3,))  # 4 time rows x 3 envs
    f = jax.jit(lambda p, rows: upd.loss_fn(p, model, mb, rows=rows, **_on(ts, cs)))
    full, m_full = f(params, None)
    g_full = jax.grad(lambda p: f(p, None)[0])(params)
    subsets = [jnp.asarray(r) for r in itertools.combinations(range(4), 2)]
    outs = [f(params, r) for r in subsets]
    grads = [jax.grad(lambda p, r=r: f(p, r)[0])(params) for r in subsets]
    np.testing.assert_allclose(np.mean([o[1].couple for o in outs], axis=0), m_full.couple,
                               rtol=1e-5)
    np.testing.assert_allclose(np.mean([float(o[0]) for o in outs]), float(full), rtol=1e-5)
    mean_grad = jax.tree.map(lambda *g: jnp.mean(jnp.stack(g), axis=0), *grads)
    chex.assert_trees_all_close(mean_grad, g_full, rtol=1e-4, atol=1e-6)
    # one subset alone is not the full term (so the checks above could fail) ...
    assert not np.allclose(outs[0][1].couple, m_full.couple, rtol=1e-3)
    # ... and the subsampled coupling still never moves the central policy
    g_couple = jax.grad(lambda p: jnp.sum(f(p, subsets[0])[1].couple))(params)
    chex.assert_trees_all_equal(g_couple.central, jax.tree.map(jnp.zeros_like, params.central))
    assert _max_abs(g_couple.teacher) > 1e-5
    # the rows picked: m of T/M without replacement, and the samples they hold
    rows = upd.cross_rows(jax.random.key(0), 4, 2)
    assert len(set(np.asarray(rows).tolist())) == 2
    x = jnp.arange(2 * 12).reshape(2, 12)  # [P, 4 rows x 3 envs]
    np.testing.assert_array_equal(upd.take_rows(x, jnp.asarray([1, 3]), 4),
                                  [[3, 4, 5, 9, 10, 11], [15, 16, 17, 21, 22, 23]])
    assert validate(Config(method="dnc")).resolved_cross_steps == 8  # (128 / 4) / 4


# --- clip_per_teacher -------------------------------------------------------------------------

def test_clip_per_teacher_hand_values():
    # teacher 0: leaves [3, 0] and [[4]] -> norm sqrt(9 + 16) = 5; max 1 -> scale 1/5
    # teacher 1: leaves [0.3, 0] and [[0.4]] -> norm 0.5 < 1 -> untouched
    grads = {"a": jnp.array([[3.0, 0.0], [0.3, 0.0]]),
             "b": jnp.array([[[4.0]], [[0.4]]])}
    clipped, norms = upd.clip_per_teacher(grads, jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(norms, [5.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(clipped["a"][0], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(clipped["b"][0], [[0.8]], rtol=1e-6)
    np.testing.assert_allclose(jnp.sqrt(jnp.sum(clipped["a"][0] ** 2)
                                        + jnp.sum(clipped["b"][0] ** 2)), 1.0, rtol=1e-6)
    # the teacher under its threshold is bit-for-bit untouched, whatever the other's norm
    np.testing.assert_array_equal(clipped["a"][1], grads["a"][1])
    np.testing.assert_array_equal(clipped["b"][1], grads["b"][1])

    # per-teacher thresholds: max [10, 0.25] -> teacher 0 untouched, teacher 1 halved
    clipped2, _ = upd.clip_per_teacher(grads, jnp.array([10.0, 0.25]))
    np.testing.assert_array_equal(clipped2["a"][0], grads["a"][0])
    np.testing.assert_allclose(clipped2["a"][1], [0.15, 0.0], rtol=1e-6)
    np.testing.assert_allclose(clipped2["b"][1], [[0.2]], rtol=1e-6)


def test_clip_per_teacher_on_real_stacked_grads():
    """On the network's grads: norms are each slice's own norm; a loose clip is identity."""
    model = _model()
    params, ts, cs, mb = _setup(model, 3)
    g = _grads(model, params, mb, ts, cs).teacher
    _, norms = upd.clip_per_teacher(g, jnp.full(P, jnp.inf))
    for i in range(P):
        own = math.sqrt(sum(float(jnp.sum(x[i] ** 2)) for x in jax.tree.leaves(g)))
        np.testing.assert_allclose(norms[i], own, rtol=1e-5)
    loose, _ = upd.clip_per_teacher(g, norms * 2.0)
    chex.assert_trees_all_equal(loose, g)
    tight, tight_norms = upd.clip_per_teacher(g, norms / 4.0)
    _, after = upd.clip_per_teacher(tight, jnp.full(P, jnp.inf))
    np.testing.assert_allclose(after, tight_norms / 4.0, rtol=1e-5)


# --- method ppo -------------------------------------------------------------------------------

def test_ppo_has_no_central_terms():
    model = _model(method="ppo")
    assert model.config.partitions == 1 and not model.has_central
    params, ts, cs, mb = _setup(model, 4)
    chex.assert_shape(mb.action, (1, N))
    w = jnp.ones(1)
    total, metrics = jax.jit(upd.loss_fn, static_argnames=STATIC)(params, model, mb,
                                                                  **_on(ts, cs, w))
    np.testing.assert_array_equal(metrics.distill, jnp.zeros(1))
    np.testing.assert_array_equal(metrics.central_log_ratio, jnp.zeros(1))
    np.testing.assert_array_equal(metrics.couple, jnp.zeros(1))
    # the total is exactly the one teacher's PPO loss: clip + c_v value - c_ent entropy
    t = metrics.teacher
    c = model.config
    ppo = t.clip + c.vf_coef * t.value - c.ent_coef * t.entropy
    np.testing.assert_allclose(t.loss, ppo, rtol=1e-6)
    np.testing.assert_allclose(total, ppo[0], rtol=1e-6)
    # ... whatever the configured coupling and distillation coefficients
    g_big = _grads(model, params, mb, ts, cs, weights=w, alpha=3.0, lam=3.0)
    g = _grads(model, params, mb, ts, cs, weights=w)
    chex.assert_trees_all_equal(g, g_big)
    chex.assert_trees_all_equal(g.central, jax.tree.map(jnp.zeros_like, params.central))
    assert _max_abs(g.teacher) > 0.0


# --- one full update --------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["central", "ppo"])
def test_update_runs_and_changes_params(method):
    model = _model(method=method)
    c = model.config
    P_ = c.partitions
    B = c.envs_per_partition
    params, ts, cs, batch = _setup(model, 5, shape=(c.num_steps, B))
    chex.assert_shape(batch.obs, (P_, c.num_steps, B, model.env.obs_dim))
    opt = upd.OptState(model.teacher_tx.init(params.teacher), model.central_tx.init(params.central))
    weights = jnp.full(P_, 1.0 / P_)

    step = jax.jit(upd.update, static_argnames=STATIC)
    new_params, new_opt, metrics = step(model, params, opt, batch, key=jax.random.key(6),
                                        **_on(ts, cs, weights))

    chex.assert_shape(metrics.loss, ())
    chex.assert_tree_shape_prefix(metrics.teacher, (P_,))
    chex.assert_tree_all_finite(metrics.teacher)
    chex.assert_shape([metrics.distill, metrics.teacher_grad_norm], (P_,))
    chex.assert_tree_all_finite(metrics)
    assert bool(jnp.all(metrics.teacher_grad_norm > 0.0))
    chex.assert_trees_all_equal_shapes(new_params, params)
    chex.assert_trees_all_equal_shapes(new_opt, opt)
    chex.assert_tree_all_finite(new_params)

    # every teacher's every leaf moved
    for old, new in zip(jax.tree.leaves(params.teacher), jax.tree.leaves(new_params.teacher)):
        for i in range(P_):
            assert float(jnp.max(jnp.abs(new[i] - old[i]))) > 0.0
    if method == "central":
        assert bool(jnp.all(metrics.distill > 0.0))
        for old, new in zip(jax.tree.leaves(params.central), jax.tree.leaves(new_params.central)):
            assert float(jnp.max(jnp.abs(new - old))) > 0.0
    else:  # the central policy gets zero gradients and Adam leaves it where it was
        np.testing.assert_array_equal(metrics.distill, 0.0)
        chex.assert_trees_all_equal(new_params.central, params.central)


def test_epochs_without_distillation_neither_evaluate_nor_step_the_central_policy():
    """distill_epochs = 1 of E = 2: the central optimizer takes the first epoch's M = 2 steps
    only, the loss of the other epoch reads no central parameter, and the reported distill
    loss is the first epoch's (not diluted by the epoch without it)."""
    model = _model(method="central", distill_epochs=1)  # E = 2, M = 2
    c = model.config
    params, ts, cs, batch = _setup(model, 5, shape=(c.num_steps, c.envs_per_partition))
    opt = upd.OptState(model.teacher_tx.init(params.teacher), model.central_tx.init(params.central))
    step = jax.jit(upd.update, static_argnames=STATIC)
    new_params, new_opt, metrics = step(model, params, opt, batch, key=jax.random.key(6),
                                        **_on(ts, cs, WEIGHTS))
    counts = [int(x) for x in jax.tree.leaves(new_opt.central) if jnp.ndim(x) == 0]
    assert counts and all(n == 2 for n in counts), counts  # M steps: one epoch's
    assert all(int(x) == 4 for x in jax.tree.leaves(new_opt.teacher) if jnp.ndim(x) == 0)
    assert bool(jnp.all(metrics.distill > 0))
    mb = jax.tree.map(lambda x: x[:, :4], batch)
    off = lambda p: upd.loss_fn(p, model, mb, with_central=False, **_on(ts, cs))  # noqa: E731
    g = jax.grad(lambda p: off(p)[0])(params)
    chex.assert_trees_all_equal(g.central, jax.tree.map(jnp.zeros_like, params.central))
    np.testing.assert_array_equal(off(params)[1].distill, 0.0)


@pytest.mark.parametrize("method", ["central", "dnc"])
def test_noise_injection_trains_the_central_on_every_step_and_the_teachers_on_their_own(
        method):
    """noise_every = 2: the teachers' PPO, value, entropy and coupling terms are those of the
    batch without its noisy envs (every second of the B = 4 innermost); distillation reads
    the whole batch. The minibatch is 2 time steps x 4 envs per teacher."""
    noisy, plain = _model(method=method, noise_every=2), _model(method=method)
    params, ts, cs, mb = _setup(plain, 11)
    loss = jax.jit(upd.loss_fn, static_argnames=STATIC)
    _, got = loss(params, noisy, mb, **_on(ts, cs))
    own = jax.tree.map(lambda x: x[:, [0, 2, 4, 6]], mb)
    _, teachers = loss(params, plain, own, **_on(ts, cs))
    _, everything = loss(params, plain, mb, **_on(ts, cs))
    for name in ("clip", "value", "entropy"):
        np.testing.assert_allclose(getattr(got.teacher, name), getattr(teachers.teacher, name),
                                   rtol=1e-6)
    np.testing.assert_allclose(got.couple, teachers.couple, rtol=1e-6)
    np.testing.assert_allclose(got.distill, everything.distill, rtol=1e-6)
    assert not np.allclose(got.distill, teachers.distill)  # (the noisy half counts)
    c = noisy.config
    total = (jnp.sum(WEIGHTS * (teachers.teacher.loss + c.alpha * teachers.couple))
             + c.distill_coef * jnp.sum(WEIGHTS * everything.distill))
    np.testing.assert_allclose(got.loss, total, rtol=1e-6)


def test_nonfinite_flags_name_the_terms_of_the_first_faulty_step():
    model = _model(method="central")
    c = model.config
    params, ts, cs, batch = _setup(model, 5, shape=(c.num_steps, c.envs_per_partition))
    opt = upd.OptState(model.teacher_tx.init(params.teacher), model.central_tx.init(params.central))
    weights = jnp.full(P, 1.0 / P)
    step = jax.jit(upd.update, static_argnames=STATIC)
    _, _, metrics = step(model, params, opt, batch, key=jax.random.key(6), **_on(ts, cs, weights))
    assert not np.asarray(metrics.nonfinite).any()  # all finite: no flag
    # One NaN return: in the minibatch holding it the value loss is NaN, so are the gradients;
    # the clipped loss, entropy, coupling and distillation of that step read no returns and
    # stay finite. Later steps are NaN everywhere but are not kept (nor is the params check
    # after the last step, since a step was flagged before it).
    poisoned = batch.replace(returns=batch.returns.at[1, 3, 0].set(jnp.nan))
    _, _, metrics = step(model, params, opt, poisoned, key=jax.random.key(6),
                         **_on(ts, cs, weights))
    flagged = dict(zip(upd.UPDATE_TERMS, np.asarray(metrics.nonfinite).tolist()))
    assert flagged == {"clip": False, "value": True, "entropy": False, "couple": False,
                       "distill": False, "grad": True, "params": False}
