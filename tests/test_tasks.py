"""The pointgoal and fourrooms tasks: dynamics by hand, goals from contexts, termination,
rewards, gymnax equivalence at the default context, and one training iteration each."""

import collections
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.misc import rooms

from distillax import envs
from distillax.config import Config, ConfigError, validate
from distillax.contexts import make_partition
from distillax.envs import fourrooms, make_task, pointgoal
from distillax.model import build_model
from distillax.trainer import init_state, iteration

SMALL = dict(num_envs=8, num_steps=8, total_steps=8 * 8 * 3, num_minibatches=2,
             update_epochs=2, hidden_sizes=(8,), kmeans_samples=500, eval_contexts=4,
             context_candidates=8)


def _point(x=0.0, y=0.0, vx=0.0, vy=0.0, time=0):
    f = lambda *v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return pointgoal.EnvState(pos=f(x, y), vel=f(vx, vy), time=jnp.asarray(time, jnp.int32))


def _ctx(*v):
    return jnp.asarray(v, jnp.float32)


# --- pointgoal ------------------------------------------------------------------------------


def test_pointgoal_shapes_and_space():
    task = make_task("pointgoal")
    assert (task.obs_dim, task.discrete, task.action_dim, task.max_steps) == (4, False, 2, 100)
    assert task.space.names == ("goal_angle",) and task.space.tasks is None
    np.testing.assert_allclose([task.space.low[0], task.space.high[0]], [0.0, 2 * math.pi])
    assert task.default_context == (0.0,)


def test_pointgoal_goal_comes_from_the_angle():
    to_params = jax.jit(pointgoal.to_params)
    # radius 1: angle pi/2 -> (0, 1); 5 pi / 4 -> (-1/sqrt 2, -1/sqrt 2); 0 -> (1, 0)
    p = to_params(_ctx(math.pi / 2))
    np.testing.assert_allclose([p.goal_x, p.goal_y], [0.0, 1.0], atol=1e-6)
    p = to_params(_ctx(5 * math.pi / 4))
    np.testing.assert_allclose([p.goal_x, p.goal_y], [-(0.5**0.5), -(0.5**0.5)], atol=1e-6)
    p = to_params(_ctx(0.0))
    np.testing.assert_allclose([p.goal_x, p.goal_y], [1.0, 0.0], atol=1e-7)
    # the rest is the default, and the default params are the default context's goal
    d = pointgoal.EnvParams()
    assert (d.goal_x, d.goal_y) == (1.0, 0.0)
    assert (p.dt, p.max_force, p.damping, p.goal_tolerance, p.max_steps_in_episode) == (
        0.1, 1.0, 1.0, 0.1, 100)


def test_pointgoal_dynamics_by_hand():
    task = make_task("pointgoal")
    step = jax.jit(task.step)
    key = jax.random.PRNGKey(0)
    up = _ctx(math.pi / 2)  # goal (0, 1)
    # from rest at the origin, a = (1, -0.5): v = 0.1 (a - 1 * 0) = (0.1, -0.05);
    # x = 0.1 v = (0.01, -0.005); |x - g| = sqrt(0.01^2 + 1.005^2) = 1.0050498;
    # r = -0.1 * 1.0050498 - 0.001 (1 + 0.25) = -0.1017550
    out = step(key, _point(), _ctx(1.0, -0.5), up, up)
    np.testing.assert_allclose(out.obs, [0.01, -0.005, 0.1, -0.05], rtol=1e-5)
    np.testing.assert_allclose(out.reward, -0.1017550, rtol=1e-5)
    assert not bool(out.terminated) and not bool(out.truncated)
    # a = (3, 0) is clipped to (1, 0): v = (0.1, -0.05) + 0.1 ((1, 0) - (0.1, -0.05))
    # = (0.19, -0.045); x = (0.01 + 0.019, -0.005 - 0.0045) = (0.029, -0.0095);
    # the control cost sees the clipped action: 0.001 * 1
    out2 = step(key, out.state, _ctx(3.0, 0.0), up, up)
    np.testing.assert_allclose(out2.obs, [0.029, -0.0095, 0.19, -0.045], rtol=1e-5)
    dist = math.hypot(0.029, 1.0095)
    np.testing.assert_allclose(out2.reward, -0.1 * dist - 0.001, rtol=1e-5)
    # damping alone: v = 0.5 - 0.1 * 0.5 = 0.45, x = 0.2 + 0.045
    out3 = step(key, _point(x=0.2, vx=0.5), _ctx(0.0, 0.0), up, up)
    np.testing.assert_allclose(out3.obs, [0.245, 0.0, 0.45, 0.0], rtol=1e-5)


def test_pointgoal_terminates_at_the_goal_with_the_bonus():
    task = make_task("pointgoal")
    step = jax.jit(task.step)
    key = jax.random.PRNGKey(1)
    east, west = _ctx(0.0), _ctx(math.pi)
    # at rest at (0.95, 0), no force: stays; |x - (1, 0)| = 0.05 <= 0.1 -> terminated,
    # r = -0.1 * 0.05 + 1 = 0.995; the next obs is a reset (near the origin, at rest) into
    # the next context
    out = step(key, _point(x=0.95, time=7), _ctx(0.0, 0.0), east, west)
    assert bool(out.terminated) and not bool(out.truncated)
    np.testing.assert_allclose(out.reward, 0.995, rtol=1e-5)
    np.testing.assert_allclose(out.final_obs, [0.95, 0.0, 0.0, 0.0], rtol=1e-6)
    assert np.all(np.abs(out.obs[:2]) <= 0.05) and np.all(out.obs[2:] == 0.0)
    assert int(out.state.time) == 0
    np.testing.assert_array_equal(out.context, west)
    # the same state with the goal at (-1, 0) is 1.95 away: no termination, r = -0.195
    far = step(key, _point(x=0.95, time=7), _ctx(0.0, 0.0), west, east)
    assert not bool(far.terminated)
    np.testing.assert_allclose(far.reward, -0.195, rtol=1e-5)
    np.testing.assert_array_equal(far.context, west)
    # just outside the tolerance: (0.89, 0) is 0.11 away
    near = step(key, _point(x=0.89), _ctx(0.0, 0.0), east, east)
    assert not bool(near.terminated)
    np.testing.assert_allclose(near.reward, -0.011, rtol=1e-4)


def test_pointgoal_observation_hides_the_goal_and_truncates_at_100():
    task = make_task("pointgoal")
    a, b = _ctx(0.5), _ctx(4.0)
    _, state0 = task.reset(jax.random.PRNGKey(2), a)
    actions = 0.3 * jax.random.normal(jax.random.PRNGKey(3), (101, 2))  # stays near the origin
    keys = jax.random.split(jax.random.PRNGKey(4), 101)

    @jax.jit
    def run(ctx):
        def body(state, x):
            key, action = x
            out = task.step(key, state, action, ctx, ctx)
            return out.state, (out.obs, out.reward, out.terminated, out.truncated)
        return jax.lax.scan(body, state0, (keys, actions))[1]

    obs_a, rew_a, term_a, trunc_a = run(a)
    obs_b, rew_b, _, _ = run(b)
    # same start, keys and actions under two goals: identical observations, other rewards
    np.testing.assert_array_equal(obs_a, obs_b)
    assert not np.allclose(rew_a, rew_b)
    assert not np.asarray(term_a).any()
    np.testing.assert_array_equal(np.flatnonzero(trunc_a), [99])  # the 100th step


def _lockstep(task, env, params, state0, keys, actions, view=lambda o: o):
    """Step our ContextualEnv (default context) and the plain gymnax env in lockstep from the
    same state, keys and actions. Returns (ours, theirs), each (obs, state, reward,
    terminated, truncated, final_obs) stacked over time; `view` maps gymnax's observation
    to ours."""
    ctx = jnp.asarray(task.default_context, jnp.float32)

    @jax.jit
    def both(state0):
        def body(carry, x):
            ours, theirs = carry
            key, action = x
            out = task.step(key, ours, action, ctx, ctx)
            obs, st, r, te, tr, info = env.step(key, theirs, action, params)
            return (out.state, st), ((out.obs, out.state, out.reward, out.terminated,
                                      out.truncated, out.final_obs),
                                     (view(obs), st, r, te, tr,
                                      view(info["final_observation"])))
        return jax.lax.scan(body, (state0, state0), (keys, actions))[1]

    return both(state0)


def test_pointgoal_default_context_reproduces_its_gymnax_env():
    task = make_task("pointgoal")
    env, params = task.env, task.env.default_params
    steps = 250  # two truncations
    actions = jax.random.uniform(jax.random.PRNGKey(5), (steps, 2), minval=-2.0, maxval=2.0)
    keys = jax.random.split(jax.random.PRNGKey(6), steps)
    _, state0 = env.reset(jax.random.PRNGKey(7), params)
    ours, theirs = _lockstep(task, env, params, state0, keys, actions)
    chex.assert_trees_all_close(ours, theirs, rtol=1e-6, atol=1e-7)
    assert np.asarray(ours[4]).sum() == 2


# --- fourrooms ------------------------------------------------------------------------------


def _bfs_actions(free: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[int]:
    """Shortest action sequence on the map (gymnax's directions: up, right, down, left)."""
    dirs = [(-1, 0), (0, 1), (1, 0), (0, -1)]
    prev = {start: None}
    queue = collections.deque([start])
    while queue:
        cell = queue.popleft()
        for a, (dr, dc) in enumerate(dirs):
            nxt = (cell[0] + dr, cell[1] + dc)
            if free[nxt] and nxt not in prev:
                prev[nxt] = (cell, a)
                queue.append(nxt)
    path, cell = [], goal
    while prev[cell] is not None:
        cell, a = prev[cell]
        path.append(a)
    return path[::-1]


def test_fourrooms_shapes_and_task_set():
    task = make_task("fourrooms")
    assert (task.obs_dim, task.discrete, task.action_dim, task.max_steps) == (2, True, 4, 100)
    assert task.space.tasks == fourrooms.GOALS and len(fourrooms.GOALS) == 4
    assert task.default_context == (8.0, 9.0) and task.default_context in fourrooms.GOALS
    free = np.asarray(task.env.env_map)
    # one goal per room, each on a free cell: rows <= 6 / >= 7 and cols <= 5 / >= 7
    rooms_of = {(r >= 7, c >= 7) for r, c in fourrooms.GOALS}
    assert len(rooms_of) == 4 and all(free[int(r), int(c)] for r, c in fourrooms.GOALS)


def test_fourrooms_goal_is_the_context_cell():
    task = make_task("fourrooms")
    for goal in fourrooms.GOALS:
        obs, state = jax.jit(task.reset)(jax.random.PRNGKey(0), jnp.asarray(goal))
        np.testing.assert_array_equal(state.goal, np.asarray(goal, np.int32))
        # gymnax's fixed start (4, 1); the observation is the position only, as floats
        np.testing.assert_array_equal(obs, [4.0, 1.0])
        assert obs.dtype == jnp.float32
    # to_params rounds a context to its cell
    p = fourrooms.to_params(jnp.asarray([2.6, 9.4]))
    assert (int(p.goal_row), int(p.goal_col)) == (3, 9)
    assert (p.fail_prob, p.resample_init_pos, p.max_steps_in_episode) == (1.0 / 3, False, 100)


def test_fourrooms_every_task_is_reachable_and_rewarded_only_at_its_goal():
    task = make_task("fourrooms")
    free = np.asarray(task.env.env_map)
    step = jax.jit(task.env.step_env)
    for goal in fourrooms.GOALS:
        ctx = jnp.asarray(goal)
        # no slips, so the shortest path is followed exactly
        params = fourrooms.to_params(ctx).replace(fail_prob=0.0)
        _, state = task.env.reset_env(jax.random.PRNGKey(0), params)
        path = _bfs_actions(free, (4, 1), (int(goal[0]), int(goal[1])))
        assert path, goal
        rewards, terms = [], []
        for i, a in enumerate(path):
            obs, state, r, term, _ = step(jax.random.PRNGKey(i), state, jnp.asarray(a), params)
            rewards.append(float(r))
            terms.append(bool(term))
        np.testing.assert_array_equal(obs, np.asarray(goal, np.float32))
        assert rewards == [0.0] * (len(path) - 1) + [1.0], goal
        assert terms == [False] * (len(path) - 1) + [True], goal
    # shortest paths from the start: 3 moves to (3, 3), 14 to (8, 9)
    assert len(_bfs_actions(free, (4, 1), (3, 3))) == 3
    assert len(_bfs_actions(free, (4, 1), (8, 9))) == 14


def test_fourrooms_default_context_reproduces_gymnax_up_to_the_goal_in_the_obs():
    """gymnax's FourRooms with its default params but the 100-step limit: same states,
    rewards, terminations and truncations; our observation is its first two entries."""
    task = make_task("fourrooms")
    env, params = rooms.FourRooms(), rooms.EnvParams(max_steps_in_episode=100)
    ctx = jnp.asarray(task.default_context, jnp.float32)
    steps = 400
    actions = jax.random.randint(jax.random.PRNGKey(8), (steps,), 0, 4)
    keys = jax.random.split(jax.random.PRNGKey(9), steps)
    obs0, state0 = env.reset(jax.random.PRNGKey(10), params)
    ours0 = task.reset(jax.random.PRNGKey(10), ctx)
    np.testing.assert_array_equal(ours0[0], obs0[:2])
    chex.assert_trees_all_equal(ours0[1], state0)

    to_ours = lambda o: o[:2].astype(jnp.float32)  # noqa: E731  drop gymnax's goal entries
    ours, theirs = _lockstep(task, env, params, state0, keys, actions, to_ours)
    chex.assert_trees_all_equal(ours, theirs)
    # random play here both truncates at 100 steps and (sometimes) reaches the goal
    assert np.asarray(ours[4]).any() and np.asarray(ours[4]).sum() <= 4


def test_fourrooms_tasks_partition_is_one_task_per_teacher():
    task = make_task("fourrooms")
    part = make_partition(jax.random.PRNGKey(0), task.space, "tasks", 4, pool_size=3)
    np.testing.assert_array_equal(part.pool[:, 0], np.asarray(fourrooms.GOALS, np.float32))
    np.testing.assert_allclose(part.weights, [0.25] * 4)
    # the task's rules are checked where the task is built
    envs.build(validate(Config(task="fourrooms", partitioner="tasks", partitions=4)))
    with pytest.raises(ConfigError, match="number of tasks of `fourrooms` \\(4\\)"):
        envs.build(Config(task="fourrooms", partitioner="tasks", partitions=3, num_envs=12))
    with pytest.raises(ConfigError, match="continuous context space"):
        envs.build(Config(task="pointgoal", partitioner="tasks", partitions=4))


# --- one training iteration -----------------------------------------------------------------


@pytest.mark.parametrize("task,partitioner", [("fourrooms", "tasks"), ("pointgoal", "kmeans")])
def test_one_training_iteration_has_finite_losses(task, partitioner):
    config = validate(Config(task=task, partitioner=partitioner, partitions=4, **SMALL))
    model = build_model(config)
    state = init_state(model, jax.random.PRNGKey(0))
    if partitioner == "tasks":
        np.testing.assert_array_equal(state.env.context[:, 0],
                                      np.asarray(fourrooms.GOALS, np.float32))
    new, metrics = jax.jit(lambda s: iteration(model, s, axis_name=None))(state)
    u = metrics.update
    for leaf in jax.tree.leaves(u):
        assert np.all(np.isfinite(np.asarray(leaf))), (task, u)
    assert np.asarray(u.teacher.entropy).shape == (4,)
    assert int(new.iteration) == 1
    # each teacher's envs stay in its own cell (tasks: its own goal)
    if partitioner == "tasks":
        for i, goal in enumerate(fourrooms.GOALS):
            np.testing.assert_array_equal(np.asarray(new.env.context[i]),
                                          np.broadcast_to(goal, (2, 2)))
