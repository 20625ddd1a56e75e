"""Recurrent teachers and central policy (`teacher_memory`, `central_memory`): the resets of
the memory at episode ends, the gradient through the scan, the states the update recomputes
against the rollout's, the env-split minibatches of 1 and 4 devices, resume bit for bit,
`load_policy`'s carried state, the two methods that take a memory in one role only
(distral2col's teachers, DnC's central policy), and a tiny seeded learning run.

One small recurrent config (both roles a GRU) is trained once per module; its programs are
shared by the tests through the persistent compilation cache (tests/conftest.py).
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillax import cache, checkpoint, evaluation, programs, render, trainer
from distillax.config import Config
from distillax.model import build_model
from distillax.networks import RecurrentActor, unroll
from distillax.rollout import episode_starts, rollout
from distillax.run import resume, train
from distillax.update import env_minibatches

pytestmark = pytest.mark.usefixtures("compile_cache")

CFG = Config(task="cartpole", method="independent", partitions=2, num_envs=16, num_steps=32,
             total_steps=16 * 32 * 20, update_epochs=2, num_minibatches=2, hidden_sizes=(16,),
             teacher_memory="gru", central_memory="gru", memory_size=16, kmeans_samples=500,
             log_every=4, checkpoint_every=16, eval_every=20, eval_contexts=8)


def _quiet(_: str) -> None:
    pass


# --- resets and the scan, by hand -----------------------------------------------------------


def test_episode_starts_mark_the_step_after_an_end():
    # [P=1, T=5, B=2]: env 0 terminates at t=1, env 1 is truncated at t=0 and t=3; the last
    # step's end (env 0, t=4) is the next rollout's (its carried memory is already reset)
    term = np.array([[[0, 0], [1, 0], [0, 0], [0, 0], [1, 0]]], bool)
    trunc = np.array([[[0, 1], [0, 0], [0, 0], [0, 1], [0, 0]]], bool)
    starts = episode_starts(term, trunc)
    np.testing.assert_array_equal(starts[0], [[0, 0], [0, 1], [1, 0], [0, 0], [0, 1]])


def test_unroll_zeroes_the_memory_before_an_episodes_first_step():
    # step: m' = m + x, y = m'. From m0 = 10 with x = 1 each step and a reset at t = 2:
    # y = 11, 12, then 0 + 1 = 1, 2; the memory after 4 steps is 2
    step = lambda m, x: (m + x, m + x)  # noqa: E731
    xs = jnp.ones((4, 1, 1))
    reset = jnp.array([[False], [False], [True], [False]])
    end, ys = unroll(step, jnp.full((1, 1), 10.0), xs, reset)
    np.testing.assert_array_equal(ys[:, 0, 0], [11, 12, 1, 2])
    np.testing.assert_array_equal(end, [[2.0]])


def test_gradient_through_the_scan_equals_an_unrolled_reference():
    net = RecurrentActor(action_dim=2, discrete=True, hidden_sizes=(8,), memory_size=4)
    T, b = 5, 3
    kx, kp, ka = jax.random.split(jax.random.PRNGKey(0), 3)
    xs = jax.random.normal(kx, (T, b, 3))
    actions = jax.random.randint(ka, (T, b), 0, 2)
    reset = jnp.zeros((T, b), bool).at[2, 1].set(True)  # env 1 begins an episode at t = 2
    params = net.init(kp, jnp.zeros((b, 4)), xs[0])
    start = jnp.zeros((b, 4))

    def scanned(params, xs):
        step = lambda m, x: net.apply(params, m, x)  # noqa: E731
        _, dist = unroll(step, start, xs, reset)
        return jnp.sum(dist.log_prob(actions))

    def python_loop(params, xs):
        m, total = start, 0.0
        for t in range(T):
            m = jnp.where(reset[t][:, None], 0.0, m)
            m, dist = net.apply(params, m, xs[t])
            total = total + jnp.sum(dist.log_prob(actions[t]))
        return total

    g_scan = jax.jit(jax.grad(scanned, argnums=(0, 1)))(params, xs)
    g_loop = jax.jit(jax.grad(python_loop, argnums=(0, 1)))(params, xs)
    for a, b_ in zip(jax.tree.leaves(g_scan), jax.tree.leaves(g_loop)):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-6)
    # backpropagation does run through the memory: the log-probs at t = 4 depend on x_0 of
    # envs 0 and 2, while env 1's reset at t = 2 cuts its x_0 and x_1 off (what could fail:
    # a memory that is not carried, or a reset that is not applied)
    def at_4(xs):
        _, dist = unroll(lambda m, x: net.apply(params, m, x), start, xs, reset)
        return jnp.sum(dist.log_prob(actions)[4])

    late = np.asarray(jax.jit(jax.grad(at_4))(xs))
    assert np.all(np.abs(late[0, 0]) > 0) and np.all(np.abs(late[0, 2]) > 0)
    np.testing.assert_array_equal(late[:2, 1], 0.0)


def test_env_minibatches_of_4_devices_are_the_pieces_of_1_devices():
    key = jax.random.PRNGKey(3)
    one = np.asarray(env_minibatches(key, 16, 2, None))  # [M = 2, 8]
    assert sorted(one.ravel().tolist()) == list(range(16))  # every env once
    # each device's local env j is the global env 4 d + j (the env axis split in 4)
    local = jax.vmap(lambda _: env_minibatches(key, 4, 2, "d"), axis_name="d")(jnp.arange(4))
    pieces = np.asarray(local) + 4 * np.arange(4)[:, None, None]  # [D, M, 2]
    for m in range(2):
        np.testing.assert_array_equal(np.concatenate(pieces[:, m]), one[m])
    # another epoch's key draws another assignment
    assert not np.array_equal(one, env_minibatches(jax.random.PRNGKey(4), 16, 2, None))


# --- the rollout's states and the update's -------------------------------------------------


def test_the_updates_recomputed_states_equal_the_rollouts(full):
    # from the trained run's last state: its params, and its carried memories (not zeros)
    state = jax.tree.map(jnp.asarray, full[0])
    model = build_model(CFG)
    t_stats, c_stats = state.teacher_stats, state.central_stats
    act = lambda p, o, c, m: model.teachers(p, o, c, t_stats, c_stats, memory=m)  # noqa: E731
    value = lambda p, o, c, m: model.teacher_values(p, o, c, t_stats, m)  # noqa: E731

    @jax.jit
    def run(state):
        start = state.env
        end, traj = rollout(state.params.teacher, start, state.partition, act, value,
                            model.env, CFG.num_steps, CFG.context_candidates)
        reset = episode_starts(traj.terminated, traj.truncated)
        dist, v = model.teacher_sequences(state.params.teacher, start.teacher_memory, traj.obs,
                                          traj.context, reset, t_stats)
        batch, c_end = trainer._batch(model, state.params.central, traj,
                                      jnp.zeros(end.obs.shape[:2]), c_stats, start)
        return start, traj, reset, dist.log_prob(traj.action), v, batch, c_end

    start, traj, reset, log_prob, v, batch, c_end = run(state)
    assert np.sum(reset) > 4 and np.any(start.teacher_memory != 0)
    np.testing.assert_allclose(log_prob, traj.log_prob, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v, traj.value, rtol=1e-5, atol=1e-5)
    # the central policy's state runs along the same trajectories, reset at the same ends,
    # reading at each step the action the teacher took at the one before: step by step with
    # `central_dist`, from the start state given to `_batch`, the action one-hot by hand
    m = np.asarray(start.central_memory)
    M = CFG.memory_size
    assert m.shape[-1] == M + 2 and np.any(m[..., :M] != 0)
    assert set(np.unique(m[..., M:])) <= {0.0, 1.0} and np.all(m[..., M:].sum(-1) <= 1)
    step = jax.jit(lambda m, obs, context: model.central_dist(  # one compilation, T calls
        state.params.central, obs, context, c_stats, memory=m))
    for t in range(CFG.num_steps):
        m = np.where(np.asarray(reset[:, t])[..., None], 0.0, m)
        gru, d = step(m, traj.obs[:, t], traj.context[:, t])
        np.testing.assert_allclose(d.log_prob(traj.action[:, t]), batch.central_log_prob[:, t],
                                   rtol=1e-5, atol=1e-6)
        m = np.concatenate([gru, np.eye(2)[np.asarray(traj.action[:, t])]], axis=-1)
    done = np.asarray(traj.terminated[:, -1] | traj.truncated[:, -1])
    np.testing.assert_allclose(c_end, np.where(done[..., None], 0.0, m), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method, memory", [("distral2col", "teacher_memory"),
                                            ("dnc", "central_memory")])
def test_a_shared_column_and_pairwise_terms_with_the_memory_they_support(method, memory):
    # distral2col with recurrent teachers: each teacher acts with the shared central column
    # combined in, and the update recomputes that combined policy along its sequences (the
    # rollout's log-probs again); DnC with a recurrent central policy: its pairwise terms
    # (feed-forward teachers, time rows of whole-sequence minibatches) and the central
    # policy's states in one iteration, all finite, and both networks trained
    config = Config(task="cartpole", method=method, partitions=2, num_envs=8, num_steps=16,
                    total_steps=8 * 16, update_epochs=1, num_minibatches=2, hidden_sizes=(8,),
                    memory_size=8, kmeans_samples=500, **{memory: "gru"})
    model = build_model(config)
    state = trainer.init_state(model, jax.random.PRNGKey(0))
    t_stats, c_stats = state.teacher_stats, state.central_stats
    acting = model.acting_params(state.params.teacher, state.params.central)
    act = lambda p, o, c, m=None: model.teachers(p, o, c, t_stats, c_stats,  # noqa: E731
                                                 memory=m)
    value = lambda p, o, c, m=None: model.teacher_values(p, o, c, t_stats, m)  # noqa: E731

    @jax.jit
    def run(state):
        _, traj = rollout(acting, state.env, state.partition, act, value, model.env,
                          config.num_steps, config.context_candidates)
        reset = episode_starts(traj.terminated, traj.truncated)
        def log_prob(central):  # the teachers' policy recomputed along the sequences
            acting = model.acting_params(state.params.teacher, central)
            dist = model.teacher_sequences(acting, state.env.teacher_memory, traj.obs,
                                           traj.context, reset, t_stats, central_stats=c_stats)
            return dist[0].log_prob(traj.action)

        moved = jax.tree.map(lambda x: x + 0.1, state.params.central)
        return (traj, reset, log_prob(state.params.central), log_prob(moved),
                trainer.iteration(model, state, None))

    traj, reset, log_prob, log_prob_moved, (after, metrics) = run(state)
    assert np.sum(reset) > 0  # episodes ended inside the rollout
    np.testing.assert_allclose(log_prob, traj.log_prob, rtol=1e-5, atol=1e-6)
    # the teachers' policy reads the central network exactly when it is a shared column
    assert np.allclose(log_prob_moved, log_prob) != model.shares_central
    assert np.all(np.isfinite(metrics.update.loss)) and not np.any(metrics.nonfinite)
    if config.spec.coupling.needs_cross:  # DnC's pairwise term ran
        assert np.all(np.abs(metrics.update.couple) > 0)
    for old, new in ((state.params.teacher, after.params.teacher),
                     (state.params.central, after.params.central)):
        assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(old), jax.tree.leaves(new)))
    carried = after.env.teacher_memory if memory == "teacher_memory" else after.env.central_memory
    assert np.any(np.asarray(carried) != 0)


# --- a run: resume bit for bit, learning, load_policy --------------------------------------


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("full"))
    state, summary = train(CFG.replace(checkpoint_dir=d), log=_quiet)
    return jax.tree.map(np.asarray, state), summary, d


def test_resume_of_a_recurrent_run_is_bit_for_bit(full, tmp_path):
    # resumed from the run's checkpoint at 16 of 20 iterations, it ends exactly where the run
    # did: the carried memories are part of the state
    state, _, d_full = full
    assert np.any(state.env.teacher_memory != 0) and np.any(state.env.central_memory != 0)
    d = str(tmp_path / "run")
    shutil.copytree(d_full, d)
    assert checkpoint.steps(d) == (16, 20)
    shutil.rmtree(os.path.join(d, "20"))
    resumed, summary = resume(d, log=_quiet)
    assert summary.start_iteration == 16
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_a_recurrent_run_learns(full):
    # cartpole pays 1 per step: the teachers' mean return grows from the random policy's
    # (~24) to ~50 within 10k env steps (seed 0), and the greedy policies do better still
    _, summary, _ = full
    returns = [np.mean(r["teacher_return"]) for r in summary.history]
    assert returns[-1] > 1.6 * returns[0], returns
    assert summary.final["teachers_greedy"] > 2 * returns[0], summary.final


def test_load_policy_carries_the_state(full):
    _, _, d = full
    policy = checkpoint.load_policy(d, greedy=True)
    assert policy.recurrent
    state = policy.initial_state((3,))
    assert state.shape == (3, 16 + 2) and not np.any(state)  # the GRU's, the previous action
    context = np.asarray(build_model(CFG).env.space.spread(3, jax.random.PRNGKey(0)))
    obs = np.zeros((3, 4))
    action, state1 = policy(obs, context, jax.random.PRNGKey(0), state)
    assert action.shape == (3,) and np.any(state1 != 0)
    np.testing.assert_array_equal(state1[:, 16:], np.eye(2)[action])  # the action it took
    # the state changes what the policy sees: the same step from state1 moves it again
    _, state2 = policy(obs, context, jax.random.PRNGKey(0), state1)
    assert not np.allclose(state2, state1)


def test_a_recurrent_runs_video_plays_the_evaluators_episodes(full, compile_cache):
    # render.record carries each role's memory along its own rows: with sampled actions (the
    # keys matter) its returns are those of the run's own evaluation program (loaded from the
    # program store the run filled, not compiled again), who = central and who = teachers
    _, _, d = full
    _, model, policies = checkpoint.load(d)
    evaluator = evaluation.make_evaluator(model)
    runs = jax.tree.map(lambda x: np.asarray(x)[None], policies)  # the run axis R = 1
    store = programs.Store(directory=os.path.join(compile_cache, cache.PROGRAMS),
                           max_bytes=cache.max_bytes())
    assert evaluator.compile(runs, store)
    rec = render.record(model, policies, evaluator.contexts, evaluator.keys[0], greedy=False)
    for who in (evaluation.CENTRAL, evaluation.TEACHERS):
        want = evaluator.episodes(runs, False, who).returns[0]
        np.testing.assert_array_equal(rec.returns[who], want)
    np.testing.assert_array_equal(rec.returns, rec.lengths)  # cartpole pays 1 per step
