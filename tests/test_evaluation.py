"""Held-out evaluation (`evaluation.py`): episode returns, the one evaluation program of a run,
its reports and the intervals over seeds."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillax.config import Config
from distillax.envs import make_task
from distillax.evaluation import (
    Episodes,
    Evaluator,
    episode_returns,
    episodes,
    fit_by_cell,
    fit_watch,
    kept,
    make_evaluator,
    policy_returns,
    report,
    run_policies,
)
from distillax.model import build_model
from distillax.policy import Policies, own_cell
from distillax.trainer import init_state

CARTPOLE = make_task("cartpole")


# --- episode_returns -----------------------------------------------------------------------


def _episode_length_pushing_right(task, key, context):
    """Independent check with gymnax's own step_env: steps until the first termination."""
    _, state = task.reset(key, context)
    params = task.to_params(context)
    for t in range(1, task.max_steps + 1):
        _, state, _, terminated, _ = task.env.step_env(key, state, 1, params)
        if bool(terminated):
            return t
    return task.max_steps


def test_episode_returns_count_until_first_end():
    contexts = jnp.asarray([[0.5, 0.1, 1.0, 1.0],     # the default
                            [0.5, 0.1, 1.0, -1.0],    # sign flipped: pushes left
                            [1.0, 0.5, 0.5, 1.0]])    # long heavy pole, weak push
    key = jax.random.PRNGKey(4)
    always_right = lambda obs, ctx, k: jnp.ones(obs.shape[0], jnp.int32)  # noqa: E731
    ret = np.asarray(jax.jit(lambda c, k: episode_returns(always_right, CARTPOLE, c, k))(
        contexts, key))
    chex.assert_shape(ret, (3,))
    # the reset keys are split(split(key)[0], N), as episode_returns draws them
    reset_keys = jax.random.split(jax.random.split(key)[0], 3)
    lengths = [_episode_length_pushing_right(CARTPOLE, k, c)
               for k, c in zip(reset_keys, contexts)]
    # pushing one way from near rest at 10 N, the pole passes 12 degrees in ~10 steps:
    # the return is the episode length (1 per step), far below the 500 that counting past
    # the first end (auto-reset episodes, 1 per step) would give
    np.testing.assert_array_equal(ret, lengths)
    assert np.all((ret >= 5) & (ret <= 60))


def test_episode_returns_stop_once_every_episode_has_ended():
    """The loop runs until the last episode ends, not the env's 500 steps: with a policy that
    falls in ~10 steps it makes max(lengths) steps (counted through the policy's calls)."""
    contexts = jnp.asarray([[0.5, 0.1, 1.0, 1.0], [1.0, 0.5, 0.5, 1.0]])
    key = jax.random.PRNGKey(4)
    calls = []

    def always_right(obs, ctx, k):
        jax.debug.callback(lambda: calls.append(1))
        return jnp.ones(obs.shape[0], jnp.int32)

    ret = np.asarray(jax.jit(lambda c, k: episode_returns(always_right, CARTPOLE, c, k))(
        contexts, key))
    jax.effects_barrier()
    assert len(calls) == int(ret.max()) < 100


def test_a_watch_is_summed_over_each_episodes_own_steps():
    """Measured at every state acted on before the episode's first end: a watch of 1 sums to
    the episode's steps (its return in cartpole), of the cart position to its sum."""
    contexts = jnp.asarray([[0.5, 0.1, 1.0, 1.0], [1.0, 0.5, 0.5, 1.0]])
    always_right = lambda obs, ctx, k: jnp.ones(obs.shape[0], jnp.int32)  # noqa: E731
    positions = []

    def watch(obs, ctx):
        jax.debug.callback(lambda x: positions.append(np.asarray(x)), obs[:, 0])
        return {"one": jnp.ones(obs.shape[0]), "x": obs[:, 0]}

    ep = jax.jit(lambda c, k: episodes(always_right, CARTPOLE, c, k, watch))(
        contexts, jax.random.PRNGKey(4))
    jax.effects_barrier()
    np.testing.assert_array_equal(ep.fit["one"], ep.returns)
    np.testing.assert_array_equal(ep.steps, ep.returns)
    x = np.stack(positions)  # [steps, 2]: every step the loop made, ended episodes included
    want = [x[:int(n), i].sum() for i, n in enumerate(np.asarray(ep.steps))]
    np.testing.assert_allclose(ep.fit["x"], want, rtol=1e-6)


def test_fit_by_cell_weights_by_steps_and_leaves_an_empty_cell_nan():
    ep = Episodes(returns=np.zeros((1, 4)), steps=np.asarray([[10, 30, 5, 0]]),
                  fit={"kl": np.asarray([[1.0, 5.0, 2.0, 0.0]])},
                  cell=np.asarray([[0, 0, 1, 1]]))
    got = fit_by_cell(ep, 3)["kl"]
    # cell 0: (1 + 5) / (10 + 30); cell 1: 2 / 5; cell 2: no context
    np.testing.assert_allclose(got[0, :2], [0.15, 0.4])
    assert np.isnan(got[0, 2])


def test_kept_reads_from_the_random_floor_to_the_teachers():
    np.testing.assert_allclose(kept(np.asarray([150.0, -600.0]), np.asarray([200.0, -200.0]),
                                    np.asarray([20.0, -1200.0])),
                               [130 / 180, 600 / 1000])
    assert np.isnan(kept(np.asarray([1.0]), np.asarray([5.0]), np.asarray([5.0]))[0])


def _constant_policies(task, teacher_out, central_out, teacher_log_std=None,
                       central_log_std=None):
    """Policies of 2 teachers and a central policy whose every kernel is 0, so each outputs
    its last layer's bias whatever the state: `teacher_out [2, A]`, `central_out [A]`."""
    model = build_model(Config(task=task, partitions=2, hidden_sizes=(8,), kmeans_samples=200))
    state = init_state(model, jax.random.PRNGKey(0))

    def const(out, log_std):
        def f(path, x):
            name = jax.tree_util.keystr(path)
            if name.endswith("['kernel']"):
                return jnp.zeros_like(x)
            if "Dense_1']['bias']" in name and "critic" not in name:
                return jnp.asarray(out, x.dtype)
            if name.endswith("['log_std']") and log_std is not None:
                return jnp.asarray(log_std, x.dtype)
            return x
        return f

    teacher = jax.tree_util.tree_map_with_path(const(teacher_out, teacher_log_std),
                                               state.params.teacher)
    central = jax.tree_util.tree_map_with_path(const(central_out, central_log_std),
                                               state.params.central)
    return model, Policies(teacher, central, state.teacher_stats, state.central_stats,
                           state.partition)


def _watched(model, policies):
    contexts = jnp.asarray(model.env.space.spread(16, jax.random.PRNGKey(1)))
    obs = jnp.zeros((16, model.env.obs_dim))
    cell = np.asarray(own_cell(model, policies.partition)(contexts))
    assert set(cell.tolist()) == {0, 1}
    return cell, jax.tree.map(np.asarray, fit_watch(model, policies)(obs, contexts))


def test_fit_watch_by_hand_for_gaussians():
    # teacher 0: N((0.5, 0), 1), teacher 1: N(0, 1); central: N(0, diag(4, 1)).
    # KL(N(m, s^2) || N(0, c^2)) per dim = log(c / s) + (s^2 + m^2) / (2 c^2) - 1/2:
    # teacher 0: log 2 + 1.25 / 8 - 0.5 (+ 0 in dim 2); teacher 1: log 2 + 1 / 8 - 0.5
    model, policies = _constant_policies("pointgoal", [[0.5, 0.0], [0.0, 0.0]], [0.0, 0.0],
                                         [[0.0, 0.0], [0.0, 0.0]], [np.log(2.0), 0.0])
    cell, fit = _watched(model, policies)
    kl = np.log(2.0) + np.asarray([1.25, 1.0]) / 8 - 0.5
    np.testing.assert_allclose(fit["kl"], kl[cell], rtol=1e-5)
    np.testing.assert_allclose(fit["action_gap"], np.asarray([0.5, 0.0])[cell], atol=1e-6)


def test_fit_watch_by_hand_for_categoricals():
    # teacher 0: logits (1, 0), teacher 1: (0, 1); central (0, 0.1): greedy action 1.
    # KL = sum p log(p / q), p = softmax of the teacher's, q = the central's.
    model, policies = _constant_policies("cartpole", [[1.0, 0.0], [0.0, 1.0]], [0.0, 0.1])
    cell, fit = _watched(model, policies)
    q = np.exp([0.0, 0.1]) / np.exp([0.0, 0.1]).sum()
    kls = [sum(pi * np.log(pi / qi) for pi, qi in zip(p, q))
           for p in (np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum(),
                     np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum())]
    np.testing.assert_allclose(fit["kl"], np.asarray(kls)[cell], rtol=1e-5)
    np.testing.assert_array_equal(fit["action_gap"], np.asarray([1.0, 0.0])[cell])


SMALL = dict(num_envs=8, num_steps=8, total_steps=8 * 8 * 2, num_minibatches=2,
             update_epochs=1, hidden_sizes=(8,), kmeans_samples=500, eval_contexts=6,
             partitions=2, context_candidates=8)


@pytest.mark.parametrize("seeds", [1, 2])
def test_one_evaluation_program_serves_every_variant(seeds):
    """Greedy / sampled and central / teachers are traced inputs of one compiled program, and
    each call returns what the un-batched, un-traced evaluation of that seed returns."""
    config = Config(seeds=seeds, seed=5, **SMALL)
    model = build_model(config)
    states = [init_state(model, jax.random.PRNGKey(5 + s)) for s in range(seeds)]
    state = states[0] if seeds == 1 else jax.tree.map(lambda *x: jnp.stack(x), *states)
    evaluator = make_evaluator(model)
    policies = run_policies(model, state)
    evaluator.compile(policies)
    program = evaluator.program
    for teachers in (False, True):
        for greedy in (True, False):
            got = evaluator.returns(policies, greedy, teachers)
            chex.assert_shape(got, (seeds, 6))
            for s in range(seeds):
                alone = jax.tree.map(lambda x, s=s: x[s], policies)
                want = policy_returns(model, alone, jnp.asarray(evaluator.contexts),
                                      jax.random.PRNGKey(5 + s + 1), greedy, teachers)
                np.testing.assert_allclose(got[s], want, rtol=1e-6)
    assert evaluator.program is program  # compiled once
    out = report(evaluator, policies)
    if seeds == 1:
        assert set(out) >= {"central_greedy", "central_sampled", "teachers_greedy",
                            "teachers_sampled", "central_greedy_per_context"}
    else:
        assert out["seeds"] == 2 and len(out["central_greedy_seeds"]) == 2
    assert isinstance(evaluator, Evaluator)
