"""Rollout of the teachers in their partitions, GAE, and held-out episode returns."""

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillax import trainer
from distillax.config import Config
from distillax.contexts import assign, make_partition, sample_in_cell
from distillax.distributions import Categorical
from distillax.envs import make_task
from distillax.model import build_model
from distillax.rollout import (
    EnvCarry,
    acting_envs,
    gae,
    init_envs,
    noisy_envs,
    reset_ended,
    rollout,
)

# --- gae -----------------------------------------------------------------------------------
#
# One env (B = 1), T = 3, gamma = 0.9, lambda = 0.8 (so gamma * lambda = 0.72), rewards 1,
# values v = (0.5, 0.5, 4.0), last_value V(s_3) = 2. The deltas without any episode end:
#   delta_2 = 1 + 0.9 * 2   - 4.0 = -1.2
#   delta_1 = 1 + 0.9 * 4.0 - 0.5 =  4.1
#   delta_0 = 1 + 0.9 * 0.5 - 0.5 =  0.95

R = np.ones((3, 1), np.float32)
V = np.asarray([[0.5], [0.5], [4.0]], np.float32)
LAST = np.asarray([2.0], np.float32)
NO = np.zeros((3, 1), bool)
AT1 = np.asarray([[False], [True], [False]])
AT2 = np.asarray([[False], [False], [True]])
FV = np.asarray([[7.0], [3.0], [5.0]], np.float32)  # V(true s_{t+1}), read only on truncation


def _gae(term, trunc, gamma=0.9, lam=0.8, r=R, v=V, fv=FV, last=LAST):
    adv, ret = jax.jit(gae, static_argnums=(6, 7))(r, v, term, trunc, fv, last, gamma, lam)
    chex.assert_shape([adv, ret], r.shape)
    np.testing.assert_allclose(ret, adv + v, rtol=1e-6)  # returns = advantages + values
    return np.asarray(adv)[:, 0]


def test_gae_no_episode_end():
    # adv_2 = -1.2; adv_1 = 4.1 + 0.72 * -1.2 = 3.236; adv_0 = 0.95 + 0.72 * 3.236 = 3.27992
    np.testing.assert_allclose(_gae(NO, NO), [3.27992, 3.236, -1.2], rtol=1e-5)


def test_gae_termination_does_not_bootstrap():
    # terminated at t = 1: delta_1 = 1 + 0 - 0.5 = 0.5, and adv_1 does not see adv_2;
    # adv_0 = 0.95 + 0.72 * 0.5 = 1.31; adv_2 = -1.2 (the next episode) is unchanged.
    # final_value (3.0 at t = 1) is ignored on termination.
    np.testing.assert_allclose(_gae(AT1, NO), [1.31, 0.5, -1.2], rtol=1e-5)


def test_gae_truncation_bootstraps_from_final_value():
    # truncated at t = 1: bootstrap from V(true s_2) = final_value_1 = 3, not from
    # value_2 = 4 (the reset episode's first state): delta_1 = 1 + 0.9 * 3 - 0.5 = 3.2;
    # adv_1 = 3.2 (no flow from adv_2); adv_0 = 0.95 + 0.72 * 3.2 = 3.254.
    np.testing.assert_allclose(_gae(NO, AT1), [3.254, 3.2, -1.2], rtol=1e-5)


def test_gae_terminated_and_truncated_is_terminal():
    # the time limit hit on a terminal step: terminal wins, no bootstrap (as terminated)
    np.testing.assert_allclose(_gae(AT1, AT1), [1.31, 0.5, -1.2], rtol=1e-5)


def test_gae_truncation_on_last_step_ignores_last_value():
    # truncated at t = 2: delta_2 = 1 + 0.9 * final_value_2 (5) - 4 = 1.5, not the
    # last_value-based -1.2; adv_1 = 4.1 + 0.72 * 1.5 = 5.18; adv_0 = 0.95 + 0.72 * 5.18
    # = 4.6796.
    np.testing.assert_allclose(_gae(NO, AT2), [4.6796, 5.18, 1.5], rtol=1e-5)
    # terminated at t = 2: delta_2 = 1 - 4 = -3; adv_1 = 4.1 - 2.16 = 1.94;
    # adv_0 = 0.95 + 0.72 * 1.94 = 2.3468
    np.testing.assert_allclose(_gae(AT2, NO), [2.3468, 1.94, -3.0], rtol=1e-5)


def test_gae_lambda_one_gamma_one_is_monte_carlo():
    # gamma = lambda = 1: adv_t = sum_{k >= t} r_k + last_value - v_t
    # = (3 + 2 - 0.5, 2 + 2 - 0.5, 1 + 2 - 4) = (4.5, 3.5, -1)
    np.testing.assert_allclose(_gae(NO, NO, 1.0, 1.0), [4.5, 3.5, -1.0], rtol=1e-6)
    # with a termination at t = 1 the sum stops there: (2 - 0.5, 1 - 0.5, 1 + 2 - 4)
    np.testing.assert_allclose(_gae(AT1, NO, 1.0, 1.0), [1.5, 0.5, -1.0], rtol=1e-6)
    # truncation at t = 1 adds the final value instead: (2 + 3 - 0.5, 1 + 3 - 0.5, -1)
    np.testing.assert_allclose(_gae(NO, AT1, 1.0, 1.0), [4.5, 3.5, -1.0], rtol=1e-6)


def test_gae_lambda_zero_is_td_and_gamma_zero_is_reward():
    # lambda = 0: adv = delta = (0.95, 4.1, -1.2)
    np.testing.assert_allclose(_gae(NO, NO, 0.9, 0.0), [0.95, 4.1, -1.2], rtol=1e-6)
    # gamma = 0: adv = r - v = (0.5, 0.5, -3), whatever the bootstrap
    np.testing.assert_allclose(_gae(NO, AT1, 0.0, 0.8), [0.5, 0.5, -3.0], rtol=1e-6)


def test_gae_batch_and_vmap_over_teachers():
    # two envs side by side give the same as each alone (no mixing along B)
    r = np.concatenate([R, 2 * R], 1)
    v = np.concatenate([V, V], 1)
    term = np.concatenate([AT1, NO], 1)
    trunc = np.concatenate([NO, AT1], 1)
    fv = np.concatenate([FV, FV], 1)
    last = np.asarray([2.0, 2.0], np.float32)
    adv, _ = gae(r, v, term, trunc, fv, last, 0.9, 0.8)
    np.testing.assert_allclose(adv[:, 0], [1.31, 0.5, -1.2], rtol=1e-5)
    # env 1: rewards 2 -> each delta grows by 1: delta = (1.95, 5.1, -0.2, with delta_1 from
    # the truncation: 2 + 2.7 - 0.5 = 4.2); adv_1 = 4.2; adv_0 = 1.95 + 0.72 * 4.2 = 4.974
    np.testing.assert_allclose(adv[:, 1], [4.974, 4.2, -0.2], rtol=1e-5)
    # vmapped over P = 2 teachers == each teacher alone
    stack = lambda a: np.stack([a, a[:, ::-1]])  # noqa: E731
    adv_p, ret_p = jax.vmap(lambda *a: gae(*a, 0.9, 0.8))(
        stack(r), stack(v), stack(term), stack(trunc), stack(fv), np.stack([last, last]))
    np.testing.assert_allclose(adv_p[0], adv, rtol=1e-6)
    np.testing.assert_allclose(adv_p[1], adv[:, ::-1], rtol=1e-6)


# --- rollout -------------------------------------------------------------------------------

P, B, T = 4, 8, 64
CARTPOLE = make_task("cartpole")
RUN = jax.jit(rollout, static_argnums=(3, 4, 5, 6, 7))
THETA_LIMIT = 12 * 2 * np.pi / 360  # 0.2094 rad


def fake_act(params, obs, context):
    """A tiny stand-in for the teachers: per-partition logits; value = theta + 10 length.

    The value reads the context so that a final value computed with the wrong (next)
    context is visible.
    """
    logits = jnp.broadcast_to(params["logits"][:, None, :], obs.shape[:2] + (2,))
    return Categorical(logits), fake_value(params, obs, context)


def fake_value(params, obs, context):
    return obs[..., 2] + 10.0 * context[..., 0]


@pytest.fixture(scope="module")
def setup():
    # 2 x 1 x 1 x 2 grid: pole length (short/long) x gain sign
    partition = make_partition(jax.random.PRNGKey(0), CARTPOLE.space, "grid", P,
                               samples=2000, grid_shape=(2, 1, 1, 2))
    carry = jax.jit(init_envs, static_argnums=(1, 3, 4))(
        jax.random.PRNGKey(1), CARTPOLE, partition, B, 8)
    # partition 0 pushes left w.p. 0.5, 1 w.p. 1/(1+e^2) = 0.119, 2 w.p. 0.881, 3 at 0.5
    params = {"logits": jnp.asarray([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])}
    end, traj = RUN(params, carry, partition, fake_act, fake_value, CARTPOLE, T, 8)
    return partition, carry, params, end, traj


def test_rollout_signature_has_no_central_params():
    names = list(inspect.signature(rollout).parameters)
    assert names == ["teacher_params", "carry", "partition", "act", "value_fn", "env",
                     "num_steps", "candidates", "noise_every", "noise_scale"]


def test_noisy_envs_and_the_teachers_own_envs():
    np.testing.assert_array_equal(noisy_envs(6, 3), [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(noisy_envs(4, 0), [0, 0, 0, 0])
    x = np.arange(12).reshape(2, 6)  # [P, B]: envs 2 and 5 are noisy
    np.testing.assert_array_equal(acting_envs(x, 3, 1), [[0, 1, 3, 4], [6, 7, 9, 10]])
    # a minibatch's flattened (time, env) axis, B = 4 envs innermost, 1 in 2 noisy
    mb = np.arange(2 * 8).reshape(2, 8)
    np.testing.assert_array_equal(acting_envs(mb, 2, 1), [[0, 2, 4, 6], [8, 10, 12, 14]])
    assert acting_envs(x, 0, 1) is x


def test_noisy_envs_act_wider_and_store_the_teachers_own_log_prob(setup):
    partition, carry, params, _, _ = setup
    run = jax.jit(rollout, static_argnums=(3, 4, 5, 6, 7, 8))
    _, traj = run(params, carry, partition, fake_act, fake_value, CARTPOLE, T, 8, 2, 3.0)
    logp = np.asarray(jax.nn.log_softmax(params["logits"]))  # the teachers' own, [P, 2]
    action = np.asarray(traj.action)
    expected = np.take_along_axis(logp[:, None, None, :], action[..., None], -1)[..., 0]
    np.testing.assert_allclose(traj.log_prob, expected, rtol=1e-6)
    # envs 1, 3, 5, 7 act at temperature 3: partition 1's P(action 1) goes from
    # 1/(1+e^2) = 0.119 to 1/(1+e^(2/3)) = 0.339, partition 2's from 0.881 to 0.661; the
    # others as before (256 samples each: sd <= 0.03)
    own, noisy = action[:, :, 0::2].reshape(P, -1), action[:, :, 1::2].reshape(P, -1)
    np.testing.assert_allclose(own.mean(1), [0.5, 0.119, 0.881, 0.5], atol=0.08)
    np.testing.assert_allclose(noisy.mean(1), [0.5, 0.339, 0.661, 0.5], atol=0.08)


def test_init_envs(setup):
    partition, carry, _, _, _ = setup
    assert isinstance(carry, EnvCarry)
    chex.assert_shape([carry.obs, carry.context], (P, B, 4))
    chex.assert_shape([carry.episode_return, carry.episodes, carry.episode_step], (P, B))
    np.testing.assert_array_equal(assign(partition, CARTPOLE.space, carry.context),
                                  np.broadcast_to(np.arange(P)[:, None], (P, B)))
    assert np.all(np.abs(carry.obs) <= 0.05)  # cartpole resets in [-0.05, 0.05]^4
    assert not np.any(carry.episodes)
    # every env has its own key
    assert len({tuple(k) for k in np.asarray(carry.key).reshape(P * B, -1)}) == P * B


def test_rollout_shapes(setup):
    _, _, _, end, traj = setup
    chex.assert_shape([traj.obs, traj.context], (P, T, B, 4))
    chex.assert_shape([traj.action, traj.log_prob, traj.value, traj.reward, traj.terminated,
                       traj.truncated, traj.final_value, traj.episode_step], (P, T, B))
    chex.assert_shape([end.obs, end.context], (P, B, 4))
    chex.assert_shape([end.episode_return, end.episodes], (P, B))


def test_rollout_contexts_stay_in_their_cell(setup):
    partition, carry, _, end, traj = setup
    cells = np.asarray(assign(partition, CARTPOLE.space, traj.context))
    np.testing.assert_array_equal(cells, np.broadcast_to(np.arange(P)[:, None, None], (P, T, B)))
    np.testing.assert_array_equal(assign(partition, CARTPOLE.space, end.context),
                                  np.broadcast_to(np.arange(P)[:, None], (P, B)))
    # the first step acts in the carry's contexts; after that the context changes exactly at
    # episode ends (a fresh draw from the same cell)
    np.testing.assert_array_equal(traj.context[:, 0], carry.context)
    done = np.asarray(traj.terminated | traj.truncated)
    same = np.all(np.asarray(traj.context[:, 1:] == traj.context[:, :-1]), -1)
    np.testing.assert_array_equal(same, ~done[:, :-1])
    assert done.sum() > 20  # random play in cartpole ends an episode every ~10-30 steps


def test_rollout_log_prob_and_actions(setup):
    _, _, params, _, traj = setup
    logp = np.asarray(jax.nn.log_softmax(params["logits"]))  # [P, 2]
    action = np.asarray(traj.action)
    expected = np.take_along_axis(logp[:, None, None, :], action[..., None], -1)[..., 0]
    np.testing.assert_allclose(traj.log_prob, expected, rtol=1e-6)
    # each teacher samples its own policy: P(action 1) = (0.5, 0.119, 0.881, 0.5), over
    # 512 samples (sd <= 0.022)
    np.testing.assert_allclose(action.reshape(P, -1).mean(1), [0.5, 0.119, 0.881, 0.5],
                               atol=0.1)


def test_rollout_values_and_final_values(setup):
    _, _, params, _, traj = setup
    # the stored value is the acting value V(s_t, c_t)
    np.testing.assert_allclose(traj.value, fake_value(params, traj.obs, traj.context),
                               rtol=1e-6)
    done = np.asarray(traj.terminated | traj.truncated)
    fv, v = np.asarray(traj.final_value), np.asarray(traj.value)
    # no episode end: the true next state is the next state acted on
    cont = ~done[:, :-1]
    np.testing.assert_allclose(fv[:, :-1][cont], v[:, 1:][cont], rtol=1e-5)
    # episode end: the final value is of the true last observation, in the old context:
    # theta' = final_value - 10 * length_t lies just past the 12-degree limit (or within it
    # when the cart left the track), never the reset's |theta| <= 0.05 for every end
    theta_final = fv - 10.0 * np.asarray(traj.context[..., 0])
    assert np.all(np.abs(theta_final[done]) < THETA_LIMIT + 0.1)
    assert np.mean(np.abs(theta_final[done]) > THETA_LIMIT) > 0.5


def test_rollout_episode_bookkeeping(setup):
    _, _, _, end, traj = setup
    np.testing.assert_array_equal(traj.reward, 1.0)  # cartpole pays 1 per step
    done = np.asarray(traj.terminated | traj.truncated)
    assert not np.any(traj.truncated)  # no episode reaches 500 steps in 64
    np.testing.assert_array_equal(end.episodes, done.sum(1))
    step = np.asarray(traj.episode_step)
    np.testing.assert_array_equal(step[:, 0], 0)  # fresh envs
    # the in-episode step counts up by one, and restarts at 0 after an episode end
    np.testing.assert_array_equal(step[:, 1:], np.where(done[:, :-1], 0, step[:, :-1] + 1))
    # the running return = steps since the last end (reward 1 each); the last completed
    # return = the length of the last completed episode
    np.testing.assert_array_equal(end.episode_return, np.where(done[:, -1], 0, step[:, -1] + 1))
    for p in range(P):
        for b in range(B):
            ends = np.flatnonzero(done[p, :, b])
            if len(ends) >= 1:
                assert end.last_return[p, b] == step[p, ends[-1], b] + 1


def test_rollout_is_deterministic_and_carries_on(setup):
    partition, carry, params, end, traj = setup
    end2, traj2 = RUN(params, carry, partition, fake_act, fake_value, CARTPOLE, T, 8)
    chex.assert_trees_all_equal(traj, traj2)
    # a second rollout continues from the carry: its first observations are the carry's
    _, traj3 = RUN(params, end, partition, fake_act, fake_value, CARTPOLE, T, 8)
    np.testing.assert_array_equal(traj3.obs[:, 0], end.obs)
    np.testing.assert_array_equal(traj3.context[:, 0], end.context)
    assert not np.array_equal(traj3.action, traj.action)


@pytest.mark.parametrize("method,shares", [("central", False), ("distral", False),
                                           ("distral2col", True)])
def test_iteration_never_passes_central_params_to_rollout(monkeypatch, method, shares):
    """Spy on the rollout inside trainer.iteration (abstract evaluation: nothing compiles).

    The teachers act with exactly their own params; the central params reach the rollout
    only in distral2col, where the central network is a column of every teacher's policy.
    """
    config = Config(task="cartpole", method=method, partitioner="grid", partitions=2,
                    grid_shape=(1, 1, 1, 2), kmeans_samples=500, num_envs=4, num_steps=4,
                    total_steps=16, update_epochs=1, num_minibatches=1, hidden_sizes=(4,))
    model = build_model(config)
    partition = make_partition(jax.random.PRNGKey(0), model.env.space, "grid", 2,
                               samples=500, grid_shape=(1, 1, 1, 2))
    monkeypatch.setattr(trainer, "make_partition", lambda *a, **k: partition)
    state = jax.eval_shape(lambda key: trainer.init_state(model, key), jax.random.PRNGKey(0))
    seen = {}

    def spy(*args, **kwargs):
        seen["args"], seen["kwargs"] = args, kwargs
        return rollout(*args, **kwargs)

    monkeypatch.setattr(trainer, "rollout", spy)

    def traced(state):
        seen["teacher"] = jax.tree.leaves(state.params.teacher)
        seen["central"] = jax.tree.leaves(state.params.central)
        return trainer.iteration(model, state, axis_name=None)

    jax.eval_shape(traced, state)
    assert not seen["kwargs"]
    assert len(seen["args"]) == 10  # the signature's (tested above), noise injection's last
    passed = jax.tree.leaves(seen["args"])
    has = lambda leaves: [any(x is y for y in passed) for x in leaves]  # noqa: E731
    assert seen["teacher"] and seen["central"]
    assert all(has(seen["teacher"]))
    if shares:
        assert all(has(seen["central"]))
    else:
        assert not any(has(seen["central"]))
        # the acting params are the teacher params themselves, nothing more
        acting = jax.tree.leaves(seen["args"][0])
        assert len(acting) == len(seen["teacher"])
        assert all(x is y for x, y in zip(acting, seen["teacher"]))


@pytest.mark.parametrize("ended", [0, 1, 8, 9, 40, 64])
def test_reset_ended_equals_stepping_every_env_into_a_fresh_context(ended):
    """Only ended envs draw a context (in chunks of 8 of the 64 envs here), yet the result
    is exactly the step that draws `sample_in_cell(k_ctx)` for every env as `next_context`."""
    Pc, Bc = 2, 32  # n = 64 envs: chunks of max(8, 64 // 16) = 8, so 0 to 8 loop rounds
    parts = make_partition(jax.random.PRNGKey(0), CARTPOLE.space, "grid", Pc, samples=2000,
                           grid_shape=(1, 1, 1, 2))
    env = jax.jit(init_envs, static_argnums=(1, 3, 4))(jax.random.PRNGKey(5), CARTPOLE, parts,
                                                       Bc, 8)
    k_step, k_ctx = jax.random.split(jax.random.PRNGKey(6), 2 * Pc * Bc).reshape(2, Pc, Bc, 2)
    action = jnp.zeros((Pc, Bc), jnp.int32)
    done = np.zeros(Pc * Bc, bool)
    done[np.random.default_rng(0).permutation(Pc * Bc)[:ended]] = True
    done = jnp.asarray(done.reshape(Pc, Bc))
    step = jax.vmap(jax.vmap(CARTPOLE.step))
    out = step(k_step, env.state, action, env.context, env.context)
    got = jax.jit(reset_ended, static_argnums=(5, 6))(out, done, k_step, k_ctx, parts,
                                                      CARTPOLE, 8)
    fresh = jax.vmap(lambda ks, cell: jax.vmap(
        lambda k: sample_in_cell(k, parts, CARTPOLE.space, cell, 8))(ks))(k_ctx, jnp.arange(Pc))
    ref = step(k_step, env.state, action, env.context, fresh)
    # the reference resets only where the step ended the episode; compare the reset parts
    # where `done` (forced here) says so and the untouched step elsewhere
    reset_obs, reset_state = jax.vmap(jax.vmap(
        lambda k, c: CARTPOLE.reset(jax.random.split(k)[1], c)))(k_step, fresh)
    mask = np.asarray(done)
    pick = lambda a, b: np.where(mask.reshape(mask.shape + (1,) * (a.ndim - 2)), a, b)  # noqa: E731
    np.testing.assert_array_equal(got.context, pick(fresh, out.context))
    np.testing.assert_array_equal(got.obs, pick(reset_obs, out.obs))
    chex.assert_trees_all_equal(got.state, jax.tree.map(pick, reset_state, out.state))
    # nothing else of the step changes
    chex.assert_trees_all_equal((got.reward, got.terminated, got.truncated, got.final_obs),
                                (out.reward, out.terminated, out.truncated, out.final_obs))
    # where the step itself ended an episode, the reference's reset is the same one
    real = np.asarray(out.terminated | out.truncated)
    if ended == Pc * Bc:
        np.testing.assert_array_equal(np.asarray(got.obs)[real], np.asarray(ref.obs)[real])
    assert np.all(np.asarray(assign(parts, CARTPOLE.space, got.context))
                  == np.arange(Pc)[:, None])
