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
    Evaluator,
    episode_returns,
    make_evaluator,
    policy_returns,
    report,
    run_policies,
)
from distillax.model import build_model
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
