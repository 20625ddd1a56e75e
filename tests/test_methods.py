"""Coupling methods: dnc pairwise term (vs a double loop), distral2col sharing, periodic reset,
and a seeded smoke run of every method on a discrete and a continuous task."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillax import losses
from distillax.config import METHODS, Config
from distillax.distributions import Categorical
from distillax.model import build_model
from distillax.networks import apply_stacked
from distillax.trainer import init_state, iteration, reset_teachers
from distillax.update import Batch, loss_fn

SMALL = dict(num_envs=8, num_steps=8, total_steps=8 * 8 * 3, num_minibatches=2,
             update_epochs=2, hidden_sizes=(8,), kmeans_samples=500, eval_contexts=4,
             partitions=2, context_candidates=8)


def test_dnc_coupling_equals_explicit_double_loop():
    P, n, A = 3, 5, 4
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    cross = Categorical(jax.random.normal(k1, (P, P, n, A)))  # cross[i, j]: pi_i on s ~ pi_j
    own = Categorical(jnp.stack([cross.logits[i, i] for i in range(P)]))
    rho = jnp.asarray([0.5, 0.3, 0.2])
    got = losses.dnc_coupling(own, cross, rho)

    def kl(p, q):
        return float(np.mean(np.asarray(Categorical(p).kl(Categorical(q)))))

    want = np.zeros(P)
    for i in range(P):
        for j in range(P):
            fwd = kl(cross.logits[i, i], cross.logits[j, i])  # E_{s~pi_i} KL(pi_i || pi_j)
            rev = kl(cross.logits[j, j], cross.logits[i, j])  # E_{s~pi_j} KL(pi_j || pi_i)
            want[i] += float(rho[j]) * (fwd + rev)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    assert np.all(np.asarray(got) > 0)  # a penalty: it can only raise the minimised loss


def _model_and_state(method, task="cartpole", **kw):
    model = build_model(Config(task=task, method=method, **{**SMALL, **kw}))
    return model, init_state(model, jax.random.PRNGKey(0))


def _batch(model, state, key=jax.random.PRNGKey(3), n=6):
    P, obs_dim, d = model.config.num_partitions, model.env.obs_dim, model.env.space.dim
    ks = jax.random.split(key, 6)
    ctx = jnp.broadcast_to(state.partition.pool[:, :1], (P, n, d))
    if model.env.discrete:
        action = jax.random.randint(ks[1], (P, n), 0, model.env.action_dim)
    else:
        action = jax.random.normal(ks[1], (P, n, model.env.action_dim))
    return Batch(obs=jax.random.normal(ks[0], (P, n, obs_dim)), context=ctx, action=action,
                 log_prob=-jnp.abs(jax.random.normal(ks[2], (P, n))),
                 value=jax.random.normal(ks[3], (P, n)),
                 advantages=jax.random.normal(ks[4], (P, n)),
                 returns=jax.random.normal(ks[5], (P, n)), distill_weight=jnp.ones((P, n)))


@pytest.mark.parametrize("task", ["cartpole", "pendulum"])
def test_distral2col_teacher_is_alpha_h_plus_beta_f(task):
    model, state = _model_and_state("distral2col", task, distral_alpha=0.3, distral_beta=2.0)
    mb = _batch(model, state)
    t, c = state.params.teacher, state.params.central
    # Give the central column non-trivial outputs (the init's last layer is near zero).
    c = jax.tree.map(lambda x: x + 0.3, c)
    t = jax.tree.map(lambda x: x - 0.2, t)
    dist, _ = model.teachers(model.acting_params(t, c), mb.obs, mb.context,
                             state.teacher_stats, state.central_stats)
    f, _ = apply_stacked(model.teacher, t,  # the teachers' own column f_i alone
                         model.teacher_input(mb.obs, mb.context, state.teacher_stats))
    h = model.central_dist(c, mb.obs, mb.context, state.central_stats)
    if task == "cartpole":
        np.testing.assert_allclose(dist.logits, 0.3 * h.logits + 2.0 * f.logits, rtol=1e-5,
                                   atol=1e-6)
    else:  # product of Gaussians: precisions add, the mean is precision-weighted
        p_h, p_f = 0.3 / jnp.exp(2 * h.log_std), 2.0 / jnp.exp(2 * f.log_std)
        np.testing.assert_allclose(jnp.exp(-2 * dist.log_std), p_h + p_f, rtol=1e-5)
        np.testing.assert_allclose(dist.mean, (p_h * h.mean + p_f * f.mean) / (p_h + p_f),
                                   rtol=1e-4, atol=1e-6)


def _central_grad(model, state, mb, **coefs):
    model = build_model(model.config.replace(**coefs))
    grads = jax.grad(lambda p: loss_fn(p, model, mb, state.teacher_stats, state.central_stats,
                                       state.partition.weights, None)[0])(state.params)
    return grads.central


def test_distral2col_central_receives_teacher_ppo_gradient_but_other_methods_do_not():
    for method, shared in (("distral2col", True), ("central", False), ("dnc", False)):
        model, state = _model_and_state(method)
        mb = _batch(model, state)
        g = _central_grad(model, state, mb, distill_coef=0.0)  # no distillation at all
        nonzero = any(np.any(np.asarray(x) != 0) for x in jax.tree.leaves(g))
        assert nonzero == shared, method


def test_reset_copies_central_actor_into_every_teacher():
    model, state = _model_and_state("central")
    t = reset_teachers(state.params.teacher, state.params.central)
    for leaf_t, leaf_c in zip(jax.tree.leaves(t["params"]["actor"]),
                              jax.tree.leaves(state.params.central["params"])):
        for i in range(model.config.num_partitions):
            np.testing.assert_array_equal(leaf_t[i], leaf_c)
    # The critic is untouched.
    for a, b in zip(jax.tree.leaves(t["params"]["critic"]),
                    jax.tree.leaves(state.params.teacher["params"]["critic"])):
        np.testing.assert_array_equal(a, b)


def test_reset_leaves_the_feature_maps_to_the_central_policy():
    model, state = _model_and_state("central", feature_coef=0.01)
    t = reset_teachers(state.params.teacher, state.params.central)
    assert set(t["params"]["actor"]) == set(state.params.teacher["params"]["actor"])
    np.testing.assert_array_equal(t["params"]["actor"]["pi"]["Dense_0"]["kernel"][1],
                                  state.params.central["params"]["pi"]["Dense_0"]["kernel"])


def test_reset_every_resets_inside_the_iteration():
    model, state = _model_and_state("central", reset_every=1, teacher_sees_context=True)
    new, _ = jax.jit(lambda s: iteration(model, s, axis_name=None))(state)
    for leaf_t, leaf_c in zip(jax.tree.leaves(new.params.teacher["params"]["actor"]),
                              jax.tree.leaves(new.params.central["params"])):
        np.testing.assert_array_equal(leaf_t[0], leaf_c)


@pytest.mark.parametrize("task", ["cartpole", "pendulum"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_with_finite_losses(method, task):
    model, state = _model_and_state(method, task)
    step = jax.jit(lambda s: iteration(model, s, axis_name=None))
    before = state.params
    for _ in range(2):
        state, m = step(state)
    for leaf in jax.tree.leaves(m.update):
        assert np.all(np.isfinite(np.asarray(leaf))), method
    assert int(state.iteration) == 2
    moved = [np.any(np.asarray(a) != np.asarray(b))
             for a, b in zip(jax.tree.leaves(before.teacher), jax.tree.leaves(state.params.teacher))]
    assert any(moved)
    if method != "ppo":
        assert float(m.update.distill.mean()) > 0


@pytest.mark.parametrize("task", ["cartpole", "pendulum"])
def test_feature_distillation_trains_with_finite_losses(task):
    model, state = _model_and_state("central", task, feature_coef=0.01)
    state, m = jax.jit(lambda s: iteration(model, s, axis_name=None))(state)
    for leaf in jax.tree.leaves(m.update):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert float(m.update.feature.min()) > 0
