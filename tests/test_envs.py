"""Contextual envs: the default context is plain gymnax; contexts change physics and episodes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.cartpole import EnvState as CartState

from distillax.config import Config
from distillax.envs import (
    TASKS,
    ContextualEnv,
    Drawer,
    cartpole,
    make_task,
    pendulum,
    register,
    shipped,
    task,
)
from distillax.model import build_model


def _actions(task, key, n):
    if task.discrete:
        return jax.random.randint(key, (n,), 0, task.action_dim)
    return jax.random.uniform(key, (n, task.action_dim), minval=-2.0, maxval=2.0)


@pytest.mark.parametrize("name,steps", [("cartpole", 300), ("pendulum", 450)])
def test_default_context_reproduces_gymnax(name, steps):
    """Same key, state and action: ContextualEnv.step == gymnax env.step, bit for bit.

    300 random-action cartpole steps hold ~15 terminations (random play falls in ~20
    steps); 450 pendulum steps hold two truncations at 200 steps; both auto-reset.
    """
    task = make_task(name)
    env, params = task.env, task.env.default_params
    ctx = jnp.asarray(task.default_context, jnp.float32)
    key_reset, key_act, key_run = jax.random.split(jax.random.PRNGKey(7), 3)
    actions = _actions(task, key_act, steps)
    keys = jax.random.split(key_run, steps)
    _, state0 = env.reset(key_reset, params)

    @jax.jit
    def ours(state0):
        def step(state, x):
            key, action = x
            out = task.step(key, state, action, ctx, ctx)
            return out.state, (out.obs, out.state, out.reward, out.terminated, out.truncated,
                               out.final_obs, out.context)
        return jax.lax.scan(step, state0, (keys, actions))[1]

    @jax.jit
    def theirs(state0):
        def step(state, x):
            key, action = x
            obs, state, reward, term, trunc, info = env.step(key, state, action, params)
            return state, (obs, state, reward, term, trunc, info["final_observation"])
        return jax.lax.scan(step, state0, (keys, actions))[1]

    a, b = ours(state0), theirs(state0)
    chex.assert_trees_all_equal(a[:6], b)  # obs, state, reward, terminated, truncated, final_obs
    # the default context stays the context throughout
    np.testing.assert_array_equal(a[6], np.broadcast_to(ctx, (steps, ctx.shape[0])))
    dones = np.asarray(a[3] | a[4])
    if name == "cartpole":
        assert np.asarray(a[3]).sum() >= 5 and not np.asarray(a[4]).any()
    else:
        # truncated exactly at the 200th and 400th step, never terminated
        np.testing.assert_array_equal(np.flatnonzero(dones), [199, 399])
        assert not np.asarray(a[3]).any()


def test_task_properties_and_registry():
    cp, pd = make_task("cartpole"), make_task("pendulum")
    assert (cp.obs_dim, cp.discrete, cp.action_dim, cp.max_steps) == (4, True, 2, 500)
    assert (pd.obs_dim, pd.discrete, pd.action_dim, pd.max_steps) == (3, False, 1, 200)
    assert cp.space.names == ("length", "masspole", "gain_abs", "gain_sign")
    with pytest.raises(ValueError, match="unknown task `nope`"):
        make_task("nope")
    register("cartpole_again", cartpole.make)  # (conftest's fixture undoes it)
    assert isinstance(make_task("cartpole_again"), ContextualEnv)
    assert TASKS["cartpole_again"].make is cartpole.make and not shipped("cartpole_again")
    assert task("cartpole").preset == cartpole.PRESET and shipped("cartpole")


def test_a_shipped_style_task_is_one_registration_that_trains_renders_and_caches(
        tmp_path, jax_cache_off):
    """A task registered once with its factory, preset, drawer and trust: `--preset` reads
    its preset, a run trains it and the program store keeps its programs (it is trusted),
    and a video draws it with its drawer."""
    import dataclasses

    from distillax import presets, programs, render
    from distillax.evaluation import run_policies
    from distillax.run import train

    def make():  # pendulum's code under a name of its own (videos find the drawer by it)
        return dataclasses.replace(pendulum.make(), name="my-pendulum")

    drawn = []

    def draw(c, f, t, context, env):
        drawn.append(t)
        pendulum.draw(c, f, t, context, env)

    register("my-pendulum", make, preset={"gamma": 0.9, "partitions": 2},
             drawer=Drawer((-1.7, 1.7, -1.7, 1.7), draw), trusted=True)
    assert presets.preset("my-pendulum") == {"task": "my-pendulum", "gamma": 0.9,
                                             "partitions": 2}
    config = Config(**{**presets.preset("my-pendulum"), "num_envs": 8, "num_steps": 8,
                       "total_steps": 128, "num_minibatches": 2, "update_epochs": 1,
                       "hidden_sizes": (8,), "kmeans_samples": 200, "eval_contexts": 2})
    cache = tmp_path / "cache"
    state, summary = train(config, log=lambda _: None, compile_cache=str(cache))
    assert summary.final["contexts"] == 2
    stored = programs.entries(str(cache / "programs"))
    assert len(stored) == 2  # training and evaluation, keyed by the task's name
    model = build_model(config)
    videos = render.write_videos(str(tmp_path / "videos"), model,
                                 jax.tree.map(lambda x: x[0], run_policies(model, state)),
                                 np.asarray([model.env.default_context]), jax.random.key(0),
                                 steps=5)
    assert len(videos) == 1 and drawn and (tmp_path / "videos" / videos[0]["file"]).exists()


def test_default_contexts_are_inside_their_spaces():
    for name in ("cartpole", "pendulum"):
        task = make_task(name)
        c = np.asarray(task.default_context)
        assert np.all(c >= task.space.low) and np.all(c <= task.space.high), name
    assert make_task("cartpole").default_context == (0.5, 0.1, 1.0, 1.0)
    assert make_task("pendulum").default_context == (1.0, 1.0, 10.0)


def test_cartpole_to_params_recomputes_derived_fields():
    p = jax.jit(cartpole.to_params)(jnp.asarray([0.8, 0.3, 1.2, -1.0]))
    np.testing.assert_allclose(p.length, 0.8, rtol=1e-6)
    np.testing.assert_allclose(p.masspole, 0.3, rtol=1e-6)
    np.testing.assert_allclose(p.total_mass, 1.3, rtol=1e-6)  # masscart 1.0 + 0.3
    np.testing.assert_allclose(p.polemass_length, 0.24, rtol=1e-6)  # 0.3 * 0.8
    np.testing.assert_allclose(p.force_mag, -12.0, rtol=1e-6)  # 10 * 1.2 * -1
    # the rest is the default
    assert (p.gravity, p.masscart, p.tau, p.x_threshold, p.max_steps_in_episode) == (
        9.8, 1.0, 0.02, 2.4, 500)
    # the default context gives the default derived fields: 1.1, 0.05, 10
    d = cartpole.to_params(jnp.asarray(make_task("cartpole").default_context))
    np.testing.assert_allclose([d.total_mass, d.polemass_length, d.force_mag],
                               [1.1, 0.05, 10.0], rtol=1e-6)


def test_pendulum_to_params():
    p = pendulum.to_params(jnp.asarray([0.7, 1.3, 12.0]))
    np.testing.assert_allclose([p.m, p.l, p.g], [0.7, 1.3, 12.0], rtol=1e-6)
    assert (p.max_torque, p.dt, p.max_steps_in_episode) == (2.0, 0.05, 200)


def _cart_state(x=0.0, x_dot=0.0, theta=0.0, theta_dot=0.0, time=0):
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return CartState(x=f(x), x_dot=f(x_dot), theta=f(theta), theta_dot=f(theta_dot),
                     time=jnp.asarray(time, jnp.int32))


def test_negative_gain_pushes_the_other_way():
    task = make_task("cartpole")
    key = jax.random.PRNGKey(0)
    step = jax.jit(task.step)
    plus = jnp.asarray([0.5, 0.1, 1.0, 1.0])
    minus = jnp.asarray([0.5, 0.1, 1.0, -1.0])
    # from rest, action 1 with force F = +10: temp = F / 1.1 = 9.0909;
    # thetaacc = -temp / (0.5 * (4/3 - 0.1/1.1)) = -14.634; xacc = temp - 0.05 * thetaacc / 1.1
    # = 9.7561, so x_dot = 0.02 * 9.7561 = 8/41 = 0.19512. With the sign flipped: -8/41.
    up = step(key, _cart_state(), jnp.asarray(1), plus, plus)
    down = step(key, _cart_state(), jnp.asarray(1), minus, minus)
    np.testing.assert_allclose(up.state.x_dot, 8 / 41, rtol=1e-5)
    np.testing.assert_allclose(down.state.x_dot, -8 / 41, rtol=1e-5)
    np.testing.assert_allclose(up.obs[1], 8 / 41, rtol=1e-5)
    # action 0 with the negative gain is action 1 with the positive one
    mirror = step(key, _cart_state(), jnp.asarray(0), minus, minus)
    np.testing.assert_allclose(mirror.state.x_dot, up.state.x_dot, rtol=1e-6)
    # half the gain, half the force: x_dot scales linearly from rest
    half = jnp.asarray([0.5, 0.1, 0.5, 1.0])
    np.testing.assert_allclose(step(key, _cart_state(), jnp.asarray(1), half, half).state.x_dot,
                               4 / 41, rtol=1e-5)


def test_episode_end_resets_into_next_context():
    task = make_task("cartpole")
    key = jax.random.PRNGKey(3)
    ctx = jnp.asarray([0.5, 0.1, 1.0, 1.0])
    nxt = jnp.asarray([0.9, 0.4, 1.4, -1.0])
    # x = 2.39 moving right at 1 m/s: x' = 2.39 + 0.02 * 1 = 2.41 > 2.4 -> terminated
    out = jax.jit(task.step)(key, _cart_state(x=2.39, x_dot=1.0, time=17), jnp.asarray(1),
                             ctx, nxt)
    assert bool(out.terminated) and not bool(out.truncated)
    np.testing.assert_allclose(out.final_obs[0], 2.41, rtol=1e-6)
    np.testing.assert_allclose(out.reward, 1.0)
    # the next observation is a fresh reset (in [-0.05, 0.05]^4, time 0) drawn with the
    # reset half of the key, in the next context
    _, key_reset = jax.random.split(key)
    obs_re, state_re = task.reset(key_reset, nxt)
    np.testing.assert_array_equal(out.obs, obs_re)
    chex.assert_trees_all_equal(out.state, state_re)
    assert np.all(np.abs(out.obs) <= 0.05) and int(out.state.time) == 0
    np.testing.assert_array_equal(out.context, nxt)
    assert not np.allclose(out.final_obs, out.obs)


def test_no_episode_end_keeps_context_and_obs():
    task = make_task("cartpole")
    ctx = jnp.asarray([0.5, 0.1, 1.0, 1.0])
    nxt = jnp.asarray([0.9, 0.4, 1.4, -1.0])
    out = jax.jit(task.step)(jax.random.PRNGKey(3), _cart_state(x=0.1, time=5),
                             jnp.asarray(0), ctx, nxt)
    assert not bool(out.terminated) and not bool(out.truncated)
    np.testing.assert_array_equal(out.context, ctx)
    np.testing.assert_array_equal(out.obs, out.final_obs)
    assert int(out.state.time) == 6
    np.testing.assert_allclose(out.final_obs[0], 0.1, rtol=1e-6)  # x' = x + 0.02 * 0


def test_cartpole_truncation_is_not_termination():
    task = make_task("cartpole")
    ctx = jnp.asarray(task.default_context)
    nxt = jnp.asarray([0.3, 0.2, 0.7, -1.0])
    # upright at rest with 499 steps done: the 500th step truncates without terminating
    out = jax.jit(task.step)(jax.random.PRNGKey(0), _cart_state(time=499), jnp.asarray(1),
                             ctx, nxt)
    assert bool(out.truncated) and not bool(out.terminated)
    np.testing.assert_array_equal(out.context, nxt)
    assert int(out.state.time) == 0
    # true last observation: x = 0 + 0.02 * 0 = 0, x_dot = 8/41 (see the gain test)
    np.testing.assert_allclose(out.final_obs[:2], [0.0, 8 / 41], rtol=1e-5, atol=1e-7)


def test_pendulum_truncates_at_max_steps():
    task = make_task("pendulum")
    ctx = jnp.asarray([1.2, 0.8, 9.0])
    nxt = jnp.asarray([0.6, 1.4, 14.0])
    obs0, state0 = task.reset(jax.random.PRNGKey(1), ctx)
    keys = jax.random.split(jax.random.PRNGKey(2), 201)

    @jax.jit
    def run(state0):
        def step(carry, key):
            state, context = carry
            out = task.step(key, state, jnp.zeros((1,)), context, nxt)
            return (out.state, out.context), (out.terminated, out.truncated, out.context,
                                              out.state.time)
        return jax.lax.scan(step, (state0, ctx), keys)[1]

    term, trunc, context, time = run(state0)
    assert not np.asarray(term).any()
    # the 200th step (index 199) truncates; the env then runs on in the next context
    np.testing.assert_array_equal(np.flatnonzero(trunc), [199])
    np.testing.assert_array_equal(np.asarray(time)[[0, 198, 199, 200]], [1, 199, 0, 1])
    np.testing.assert_array_equal(context[198], ctx)
    np.testing.assert_array_equal(context[199:], np.broadcast_to(nxt, (2, 3)))


def test_context_changes_pendulum_dynamics():
    task = make_task("pendulum")
    _, state = task.reset(jax.random.PRNGKey(0), jnp.asarray(task.default_context))
    state = state.replace(theta=jnp.asarray(0.5), theta_dot=jnp.asarray(0.0))
    # newthdot = 0 + (3 g / (2 l) sin(0.5) + 3 / (m l^2) u) * 0.05 with u = 0:
    # g = 10, l = 1 -> 0.75 * sin(0.5) = 0.35957; g = 15, l = 0.5 -> 2.25 * sin(0.5) = 1.07872
    a = task.step(jax.random.PRNGKey(1), state, jnp.zeros((1,)), jnp.asarray([1.0, 1.0, 10.0]),
                  jnp.asarray([1.0, 1.0, 10.0]))
    b = task.step(jax.random.PRNGKey(1), state, jnp.zeros((1,)), jnp.asarray([1.0, 0.5, 15.0]),
                  jnp.asarray([1.0, 0.5, 15.0]))
    np.testing.assert_allclose(a.state.theta_dot, 0.75 * np.sin(0.5), rtol=1e-5)
    np.testing.assert_allclose(b.state.theta_dot, 2.25 * np.sin(0.5), rtol=1e-5)
    # torque scales with 1 / (m l^2): u = 1, m = 0.5, l = 1, theta = 0 -> 3 / 0.5 * 0.05 = 0.3
    state0 = state.replace(theta=jnp.asarray(0.0))
    c = task.step(jax.random.PRNGKey(1), state0, jnp.ones((1,)), jnp.asarray([0.5, 1.0, 10.0]),
                  jnp.asarray([0.5, 1.0, 10.0]))
    np.testing.assert_allclose(c.state.theta_dot, 0.3, rtol=1e-5)


def test_step_vmaps_over_envs_and_contexts():
    task = make_task("cartpole")
    n = 6
    ctx = task.space.sample(jax.random.PRNGKey(0), (n,))
    nxt = task.space.sample(jax.random.PRNGKey(1), (n,))
    obs, state = jax.vmap(task.reset)(jax.random.split(jax.random.PRNGKey(2), n), ctx)
    out = jax.jit(jax.vmap(task.step))(jax.random.split(jax.random.PRNGKey(3), n), state,
                                       jnp.ones(n, jnp.int32), ctx, nxt)
    chex.assert_shape([out.obs, out.final_obs, out.context], (n, 4))
    chex.assert_shape([out.reward, out.terminated, out.truncated], (n,))
    assert out.terminated.dtype == jnp.bool_ and out.reward.dtype == jnp.float32
    # each env pushes with its own gain sign: x_dot has the sign of gain_sign (the pole
    # starts within 0.05 of rest, so the push dominates: |dx_dot| ~ 0.2 * gain_abs)
    dx = np.asarray(out.final_obs[:, 1] - obs[:, 1])
    np.testing.assert_array_equal(np.sign(dx), np.asarray(ctx[:, 3]))
