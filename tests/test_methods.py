"""Methods as specs (`methods.py`): what each spec makes the model, update and trainer do, the
fidelity of DnC and Distral to their papers, a toy method registered through its spec alone,
and a seeded smoke run of every method on a discrete and a continuous task."""

import functools
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from distillax import losses, methods
from distillax.config import Config, ConfigError, validate
from distillax.distributions import Categorical
from distillax.model import build_model
from distillax.networks import apply_stacked
from distillax.trainer import (
    init_state,
    iteration,
    reset_actor_momentum,
    reset_teachers,
    training_rewards,
)
from distillax.update import Batch, loss_fn

SMALL = dict(num_envs=8, num_steps=8, total_steps=8 * 8 * 3, num_minibatches=2,
             update_epochs=2, hidden_sizes=(8,), kmeans_samples=500, eval_contexts=4,
             partitions=2, context_candidates=8)
SRC = os.path.join(os.path.dirname(__file__), os.pardir, "src", "distillax")


def _model_and_state(method, task="cartpole", **kw):
    """(model, fresh state) of a small config: built once per (method, task, fields) for the
    module (tests share them: a state's arrays are immutable), each build compiles its
    partition and init programs."""
    return _built(method, task, tuple(sorted(kw.items())))


@functools.cache
def _built(method, task, kw):
    model = build_model(validate(Config(task=task, method=method, **{**SMALL, **dict(kw)}),
                                 num_devices=1))
    return model, init_state(model, jax.random.PRNGKey(0))


def _batch(model, state, key=None, n=6):
    key = jax.random.PRNGKey(3) if key is None else key
    P, obs_dim, d = model.config.partitions, model.env.obs_dim, model.env.space.dim
    ks = jax.random.split(key, 6)
    ctx = jnp.broadcast_to(state.partition.pool[:, :1], (P, n, d))
    if model.env.discrete:
        action = jax.random.randint(ks[1], (P, n), 0, model.env.action_dim)
    else:
        action = jax.random.normal(ks[1], (P, n, model.env.action_dim))
    obs = jax.random.normal(ks[0], (P, n, obs_dim))
    log_prob = -jnp.abs(jax.random.normal(ks[2], (P, n)))
    central, central_log_prob = None, log_prob  # pi_c as the update begins (the trainer's)
    if model.has_central:
        central = model.central_dist(state.params.central, obs, ctx, state.central_stats)
        central_log_prob = central.log_prob(action)
    return Batch(obs=obs, context=ctx, action=action, log_prob=log_prob,
                 value=jax.random.normal(ks[3], (P, n)),
                 advantages=jax.random.normal(ks[4], (P, n)),
                 returns=jax.random.normal(ks[5], (P, n)), distill_weight=jnp.ones((P, n)),
                 central=central, central_log_prob=central_log_prob)


def _perturbed(state):
    """(teacher, central) params with clearly different outputs: the init's 0.01-scaled last
    layer makes every policy near uniform, so add N(0, 0.5^2) noise (fixed keys) to each."""

    def noisy(tree, seed):
        leaves, treedef = jax.tree.flatten(tree)
        keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
        return treedef.unflatten([x + 0.5 * jax.random.normal(k, x.shape)
                                  for x, k in zip(leaves, keys)])

    return noisy(state.params.teacher, 11), noisy(state.params.central, 12)


# --- the spec is the one place a method is defined ------------------------------------------

def test_every_shipped_method_has_a_spec_and_the_documented_defaults():
    assert set(methods.names()) == {"independent", "central", "central-kl", "central-clip",
                                    "dnc", "distral", "distral2col", "ppo"}
    assert Config(method="central").alpha == 0.01
    assert Config(method="central-clip").alpha == 1.0  # the PPO-style bound
    assert Config(method="central-clip", coupling_coef=0.5).alpha == 0.5
    assert Config(method="distral2col").resolved_divergence == "nll"
    assert Config(method="distral2col", divergence="kl").resolved_divergence == "kl"
    assert Config(method="ppo", partitions=4).partitions == 1


def test_outside_methods_py_no_line_branches_on_a_method_name():
    """The issue's budget is 3 lines outside methods.py (CLI and docs aside); there are 0.

    A branch is a comparison of a `method` value (`method == ...`, `method in (...)`) or a
    comparison with a method's name on a line that mentions a method."""
    names = "|".join(re.escape(n) for n in methods.names())
    on_method = re.compile(r"\bmethod\s*(==|!=|\bin\b|\bnot in\b)")
    with_name = re.compile(rf"""(["']({names})["']\s*(==|!=|\bin\b))"""
                           rf"""|((==|!=)\s*["']({names})["'])""")

    def branches(line):
        code = line.split("#")[0]
        bare = re.sub(r""""[^"]*"|'[^']*'""", '""', code)  # prose in strings is not a branch
        return bool(on_method.search(bare) or ("method" in bare and with_name.search(code)))

    hits = []
    for root, _, files in os.walk(SRC):
        for f in files:
            if f.endswith(".py") and f != "methods.py":
                for i, line in enumerate(open(os.path.join(root, f)), 1):
                    if branches(line):
                        hits.append(f"{f}:{i}: {line.strip()}")
    assert len(hits) <= 3, hits
    assert hits == [], hits
    # and the check does catch such branches
    assert branches('if c.method == "dnc":') and branches('if "ppo" == config.method:')
    assert branches('    elif method in ("ppo", "distral2col"):')


def _toy_coupling(x: methods.CouplingInputs) -> jax.Array:
    """A new coupling: the mean squared log ratio to the central policy on teacher samples,
    mean (log pi_i - sg log pi_c)^2 (only pi_i moves: the central log ratio is stopped)."""
    log_rho = x.log_ratio - jax.lax.stop_gradient(x.central_log_ratio)
    return jnp.mean(log_rho**2, axis=1)


TOY = methods.MethodSpec(
    name="toy-l2", summary="a test method: alpha mean (log pi_i / pi_c)^2",
    coupling=methods.Coupling("l2", _toy_coupling, "mean squared log ratio to pi_c"),
    coupling_coef=0.1)


def test_a_toy_method_registered_through_its_spec_alone_trains(monkeypatch, tmp_path):
    from distillax import train

    monkeypatch.setitem(methods.METHODS, TOY.name, TOY)
    config = Config(method="toy-l2", **{**SMALL, "total_steps": 8 * 8 * 4}, log_every=2,
                    eval_every=2, checkpoint_dir=str(tmp_path))
    state, summary = train(config, log=lambda _: None)
    assert summary.iteration == 4
    record = summary.history[-1]
    couple = np.asarray(record["couple"])
    assert couple.shape == (2,) and np.all(couple > 0) and np.all(np.isfinite(couple))
    assert np.isfinite(summary.final["central_greedy"])
    # and the term is in the loss, alpha times it, on a fixed minibatch
    model, fresh = _model_and_state("toy-l2", coupling_coef=2.0)
    mb = _batch(model, fresh)
    teacher, central = _perturbed(fresh)
    params = fresh.params.replace(teacher=teacher, central=central)
    kw = dict(teacher_stats=fresh.teacher_stats, central_stats=fresh.central_stats,
              weights=fresh.partition.weights, axis_name=None)
    off = build_model(model.config.replace(coupling_coef=0.0))
    # jitted: op by op, the loss took ~100 small compilations (most of this test's time)
    total, m = jax.jit(lambda p: loss_fn(p, model, mb, **kw))(params)
    total_off, _ = jax.jit(lambda p: loss_fn(p, off, mb, **kw))(params)
    assert float(jnp.min(m.couple)) > 1e-2
    np.testing.assert_allclose(float(total - total_off),
                               2.0 * float(jnp.sum(fresh.partition.weights * m.couple)),
                               rtol=1e-4)


def test_method_names_are_validated_against_the_registry():
    with pytest.raises(ConfigError, match="`method`"):
        validate(Config(method="toy-l2"), num_devices=1)


# --- couplings: the central policy never moves ----------------------------------------------

@pytest.mark.parametrize("coupling", [methods.RATIO_KL, methods.CLOSED_FORM_KL,
                                      methods.CENTRAL_RATIO_CLIP])
def test_couplings_to_the_central_policy_move_teachers_only(coupling):
    P, n = 2, 5
    k = jax.random.split(jax.random.PRNGKey(1), 4)
    t_logits, c_logits = jax.random.normal(k[0], (P, n, 3)), jax.random.normal(k[1], (P, n, 3))
    action = jax.random.randint(k[2], (P, n), 0, 3)
    old = jnp.log(jnp.full((P, n), 1 / 3))

    def term(t_logits, c_logits):
        t, c = Categorical(t_logits), Categorical(c_logits)
        x = methods.CouplingInputs(
            teacher=t, log_ratio=t.log_prob(action) - old, central=c,
            central_log_ratio=c.log_prob(action) - old,
            advantages=jax.random.normal(k[3], (P, n)), weights=jnp.array([0.4, 0.6]),
            cross=None, cross_own=None, clip_eps=0.2, central_clip_eps=0.1)
        return jnp.sum(coupling.fn(x))

    g_t, g_c = jax.grad(term, argnums=(0, 1))(t_logits, c_logits)
    np.testing.assert_array_equal(g_c, 0.0)
    assert float(jnp.abs(g_t).sum()) > 0.0


# --- Distral 2-column: the paper's objective, equal information, the same exploration --------

@pytest.mark.parametrize("task", ["cartpole", "pendulum"])
def test_distral2col_teacher_is_alpha_h_plus_beta_f(task):
    model, state = _model_and_state("distral2col", task, distral_alpha=0.3, distral_beta=2.0)
    mb = _batch(model, state)
    t, c = _perturbed(state)
    dist, _ = model.teachers(model.acting_params(t, c), mb.obs, mb.context,
                             state.teacher_stats, state.central_stats)
    f, _ = apply_stacked(model.teacher, t,  # the teachers' own column f_i alone
                         model.teacher_input(mb.obs, mb.context, state.teacher_stats))
    h = model.central.apply(c, model.column_input(mb.obs, mb.context, state.central_stats))
    if task == "cartpole":
        np.testing.assert_allclose(dist.logits, 0.3 * h.logits + 2.0 * f.logits, rtol=1e-5,
                                   atol=1e-6)
    else:  # product of Gaussians: precisions add (f's scaled by 1 - alpha), mean weighted
        p_h, p_f = 0.3 / jnp.exp(2 * h.log_std), 0.7 / jnp.exp(2 * f.log_std)
        np.testing.assert_allclose(jnp.exp(-2 * dist.log_std), p_h + p_f, rtol=1e-5)
        np.testing.assert_allclose(dist.mean, (p_h * h.mean + p_f * f.mean) / (p_h + p_f),
                                   rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("task", ["cartpole", "pendulum"])
def test_distral2col_context_blind_teachers_do_not_see_the_context_through_the_column(task):
    """Two contexts, the same observations: a context-blind 2-column teacher acts the same;
    the central policy itself (which sees the context) does not."""
    model, state = _model_and_state("distral2col", task)
    mb = _batch(model, state)
    t, c = _perturbed(state)
    other = mb.context + 0.3 * (jnp.asarray(model.env.space.high)
                                - jnp.asarray(model.env.space.low))
    acting = model.acting_params(t, c)
    d1, _ = model.teachers(acting, mb.obs, mb.context, state.teacher_stats, state.central_stats)
    d2, _ = model.teachers(acting, mb.obs, other, state.teacher_stats, state.central_stats)
    for a, b in zip(jax.tree.leaves(d1), jax.tree.leaves(d2)):
        np.testing.assert_array_equal(a, b)
    c1 = model.central_dist(c, mb.obs, mb.context, state.central_stats)
    c2 = model.central_dist(c, mb.obs, other, state.central_stats)
    assert float(jnp.max(jnp.abs(c1.location - c2.location))) > 1e-3
    # teachers that are given the context see it through the column too
    seeing, st2 = _model_and_state("distral2col", task, teacher_sees_context=True)
    t2, c2_ = _perturbed(st2)
    s1, _ = seeing.teachers(seeing.acting_params(t2, c2_), mb.obs, mb.context,
                            st2.teacher_stats, st2.central_stats)
    s2, _ = seeing.teachers(seeing.acting_params(t2, c2_), mb.obs, other,
                            st2.teacher_stats, st2.central_stats)
    assert float(jnp.max(jnp.abs(s1.location - s2.location))) > 1e-3


def test_distral2col_gaussian_teachers_start_at_the_configured_exploration_scale():
    """Every method's teachers start at std 1 (log std 0); the plain product pi_c^0.5 pi_f^5
    would start at (0.5 + 5)^-1/2 = 0.43 (pendulum's old -535 row)."""
    for method in ("distral2col", "central"):
        model, state = _model_and_state(method, "pendulum")
        mb = _batch(model, state)
        acting = model.acting_params(state.params.teacher, state.params.central)
        dist, _ = model.teachers(acting, mb.obs, mb.context, state.teacher_stats,
                                 state.central_stats)
        np.testing.assert_allclose(dist.log_std, 0.0, atol=1e-6)


def _traj(model, state, key=None):
    key = jax.random.PRNGKey(4) if key is None else key
    from distillax.rollout import rollout

    c = model.config
    ts, cs = state.teacher_stats, state.central_stats
    act = lambda p, o, ctx: model.teachers(p, o, ctx, ts, cs)  # noqa: E731
    value_fn = lambda p, o, ctx: model.teacher_values(p, o, ctx, ts)  # noqa: E731
    acting = model.acting_params(*_perturbed(state))
    _, traj = rollout(acting, state.env, state.partition, act, value_fn, model.env,
                      c.num_steps, c.context_candidates)
    return traj


@pytest.mark.parametrize("method", ["distral", "distral2col"])
def test_distral_methods_learn_from_the_regularised_reward_scaled_as_a_whole(method):
    """r_train = scale (r + (alpha/beta) log pi_c - (1/beta) log pi_i), gamma^t distillation
    weights. distral2col had the plain reward before; a reward_scale used to multiply r alone,
    which moved the effective beta."""
    model, state = _model_and_state(method, reward_scale=0.1, distral_alpha=0.4,
                                    distral_beta=2.0, gamma=0.9)
    traj = _traj(model, state)
    _, c = _perturbed(state)
    log_pc = model.central_dist(c, traj.obs, traj.context, state.central_stats).log_prob(
        traj.action)
    reward, weight = training_rewards(model, log_pc, traj)
    want = 0.1 * (traj.reward + 0.2 * log_pc - 0.5 * traj.log_prob)
    np.testing.assert_allclose(reward, want, rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(reward - 0.1 * traj.reward))) > 1e-3
    np.testing.assert_allclose(weight, 0.9 ** np.asarray(traj.episode_step), rtol=1e-6)
    assert int(np.max(traj.episode_step)) > 0


def test_other_methods_learn_from_the_scaled_task_reward_with_unit_weights():
    model, state = _model_and_state("central", reward_scale=0.1)
    traj = _traj(model, state)
    reward, weight = training_rewards(model, traj.log_prob, traj)
    np.testing.assert_allclose(reward, 0.1 * traj.reward, rtol=1e-6)
    np.testing.assert_array_equal(weight, 1.0)


@pytest.mark.parametrize("bad", [1.5, -0.1])
def test_distral_alpha_must_be_in_unit_interval(bad):
    with pytest.raises(ConfigError, match="`distral_alpha`"):
        validate(Config(method="distral", distral_alpha=bad), num_devices=1)


def test_distral2col_alpha_one_is_refused_for_gaussians_only():
    from distillax import envs

    with pytest.raises(ConfigError, match="`distral_alpha`.*< 1"):  # where the task is built
        envs.build(Config(method="distral2col", task="pendulum", distral_alpha=1.0))
    envs.build(Config(method="distral2col", task="cartpole", distral_alpha=1.0))


def _central_grad(model, state, mb, **coefs):
    model = build_model(model.config.replace(**coefs))
    grads = jax.grad(lambda p: loss_fn(
        p, model, mb, teacher_stats=state.teacher_stats, central_stats=state.central_stats,
        weights=state.partition.weights, axis_name=None)[0])(state.params)
    return grads.central


def test_distral2col_central_receives_teacher_ppo_gradient_but_other_methods_do_not():
    for method, shared in (("distral2col", True), ("central", False), ("dnc", False),
                           ("central-clip", False)):
        model, state = _model_and_state(method)
        mb = _batch(model, state)
        g = _central_grad(model, state, mb, distill_coef=0.0)  # no distillation at all
        nonzero = any(np.any(np.asarray(x) != 0) for x in jax.tree.leaves(g))
        assert nonzero == shared, method


# --- DnC's reset: a reset teacher is the central policy ---------------------------------------

def test_reset_copies_central_actor_into_every_teacher():
    model, state = _model_and_state("central")
    t = reset_teachers(state.params.teacher, state.params.central)
    for leaf_t, leaf_c in zip(jax.tree.leaves(t["params"]["actor"]),
                              jax.tree.leaves(state.params.central["params"])):
        for i in range(model.config.partitions):
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


def test_reset_zeroes_the_actor_momentum_and_keeps_the_rest():
    model, state = _model_and_state("dnc")
    opt = jax.tree.map(lambda x: x + 1.0, state.opt.teacher)  # every moment non-zero
    new = reset_actor_momentum(opt)
    adam, adam_new = opt[0], new[0]
    assert isinstance(adam_new, optax.ScaleByAdamState)
    for leaf in jax.tree.leaves(adam_new.mu["params"]["actor"]):
        np.testing.assert_array_equal(leaf, 0.0)
    for a, b in zip(jax.tree.leaves((adam.mu["params"]["critic"], adam.nu, adam.count, opt[1:])),
                    jax.tree.leaves((adam_new.mu["params"]["critic"], adam_new.nu,
                                     adam_new.count, new[1:]))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["dnc", "central"])
def test_a_reset_teacher_acts_exactly_as_the_central_policy(method):
    """DnC's setting: teachers and central see the same input (here both the context), with
    observation normalisation. After a reset iteration every teacher's policy is the central
    policy, normaliser included (the teachers used to keep their own statistics)."""
    model, state = _model_and_state(method, reset_every=1, teacher_sees_context=True,
                                    normalize_obs=True)
    new, _ = jax.jit(lambda s: iteration(model, s, axis_name=None))(state)
    mb = _batch(model, new)
    obs = 3.0 + 2.0 * mb.obs  # away from the stats' mean, so a stale normaliser would show
    teachers, _ = model.teachers(new.params.teacher, obs, mb.context, new.teacher_stats,
                                 new.central_stats)
    for i in range(model.config.partitions):
        central = model.central_dist(new.params.central, obs[i], mb.context[i],
                                     new.central_stats)
        np.testing.assert_allclose(teachers.logits[i], central.logits, rtol=1e-6, atol=1e-6)
    # the normaliser moved during the iteration, so the test could tell stale statistics
    assert float(jnp.max(jnp.abs(new.central_stats.mean))) > 1e-3


def test_dnc_with_reset_is_refused_when_teachers_and_central_see_different_inputs():
    with pytest.raises(ConfigError, match="`reset_every`"):
        validate(Config(method="dnc", reset_every=5), num_devices=1)  # central sees c only


# --- the central policy's learning rate anneals to 0 whatever distill_epochs ------------------

@pytest.mark.parametrize("method,distill_epochs", [("central", 1), ("central", 0),
                                                   ("distral2col", 1)])
def test_central_learning_rate_reaches_zero_at_the_last_central_step(method, distill_epochs):
    c = validate(Config(method=method, **{**SMALL, "update_epochs": 4},
                        distill_epochs=distill_epochs), num_devices=1)
    model = build_model(c)
    # steps the central optimizer takes in the run: it steps in `central_epochs` of E epochs
    epochs = 4 if (distill_epochs == 0 or method == "distral2col") else 1
    assert c.central_epochs == epochs
    steps = c.num_iterations * epochs * c.num_minibatches
    params = {"w": jnp.zeros(3)}
    grads = {"w": jnp.array([0.1, -0.2, 0.3])}
    opt = model.central_tx.init(params)
    update = jax.jit(model.central_tx.update)
    sizes = []
    for _ in range(steps + 1):
        u, opt = update(grads, opt, params)
        sizes.append(float(jnp.max(jnp.abs(u["w"]))))
    assert sizes[steps - 1] > 0.0  # its last real step still moves
    assert sizes[steps] <= 1e-6 * sizes[0]  # ... and the schedule is exhausted exactly then
    # Adam's first step is the step size itself: unset, twice the teachers' (2 x 2.5e-3)
    assert sizes[0] == pytest.approx(2 * c.learning_rate, rel=1e-3)


def test_the_central_step_size_is_its_own_or_twice_the_teachers_traced():
    assert Config(learning_rate=1e-3).central_lr == 2e-3
    assert Config(learning_rate=1e-3, central_learning_rate=5e-4).central_lr == 5e-4
    # a sweep over the teachers' step size moves the central one with it (traced)
    traced = jax.jit(lambda lr: Config().replace(learning_rate=lr).central_lr)(3e-4)
    assert float(traced) == pytest.approx(6e-4)


# --- every method trains -----------------------------------------------------------------------

# Every method on pendulum (Gaussian actions: the KLs, the clipped ratio and the 2-column
# product in closed form), and on cartpole (categorical) those whose teacher or coupling is
# built differently for logits: the Boltzmann product, the pairwise terms, the clipped ratio.
# (The distributions' own terms are tested on both kinds in tests/test_distributions.py.)
EVERY_METHOD = ([(m, "pendulum") for m in methods.names()]
                + [(m, "cartpole") for m in ("distral2col", "dnc", "central-clip")])


@pytest.mark.parametrize("method,task", EVERY_METHOD)
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
             for a, b in zip(jax.tree.leaves(before.teacher),
                             jax.tree.leaves(state.params.teacher))]
    assert any(moved)
    spec = methods.get(method)
    if spec.has_central:
        assert float(m.update.distill.mean()) > 0
    if spec.coupling is methods.NONE:
        np.testing.assert_array_equal(m.update.couple, 0.0)
    else:
        assert float(jnp.abs(m.update.couple).sum()) > 0.0, method


def test_feature_distillation_trains_with_finite_losses():
    model, state = _model_and_state("central", "pendulum", feature_coef=0.01)
    state, m = jax.jit(lambda s: iteration(model, s, axis_name=None))(state)
    for leaf in jax.tree.leaves(m.update):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert float(m.update.feature.min()) > 0


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
    # the method's coupling is rho_i times this (the paper's alpha rho_i sum_j rho_j)
    x = methods.CouplingInputs(teacher=own, log_ratio=None, central=None, central_log_ratio=None,
                               advantages=None, weights=rho, cross=cross, cross_own=own,
                               clip_eps=0.2, central_clip_eps=0.2)
    np.testing.assert_allclose(np.asarray(methods.DNC.fn(x)), np.asarray(rho) * want, rtol=1e-5)
    assert math.isclose(float(rho.sum()), 1.0)
