"""The brax/MJX adapter: it reproduces brax, contexts change the physics, actions are clipped
by the env, and `double-pendulum-physics` trains, redraws contexts inside the teacher's cell
at episode ends and resumes bit for bit. (The goal tasks: test_brax_tasks.py.)

MJX programs take 5-20 s each to compile on 2 cores, so the tests share them: one batched
transition and one batched reset of `double-pendulum-physics` (episodes of 20 steps, so 60
steps hold terminations and truncations) serve the reproduction, physics and clip tests; one
tiny training config serves the smoke run, the redraw and the resume tests (its runs stop
before their last iteration, so no evaluation program is compiled); the persistent
compilation cache (tests/conftest.py) lets the repeated runs reuse the training program."""

import math
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from brax.envs.inverted_double_pendulum import InvertedDoublePendulum
from brax.envs.wrappers.training import EpisodeWrapper, VmapWrapper
from conftest import PRODUCTION

from distillax.config import Config
from distillax.contexts import assign
from distillax.envs import double_pendulum, make_task
from distillax.envs import mjx as dmjx
from distillax.model import build_model
from distillax.run import resume, train
from distillax.trainer import init_state

pytestmark = pytest.mark.usefixtures("compile_cache")  # tests/conftest.py

N = 4  # envs in the shared batched step
EPISODE = 20  # episode length of the shared double-pendulum task


def _quiet(_: str) -> None:
    pass


def _leaves_differ(a, b) -> list[str]:
    """Key paths where two trees differ bitwise ([] when identical)."""
    la, ta = jax.tree_util.tree_flatten_with_path(a)
    lb, tb = jax.tree_util.tree_flatten_with_path(b)
    assert ta == tb, "different tree structures"
    return [jax.tree_util.keystr(p) for (p, x), (_, y) in zip(la, lb)
            if not np.array_equal(np.asarray(x), np.asarray(y))]


@pytest.fixture(scope="module")
def dp():
    """(task with 20-step episodes, its jitted batched transition `[N]` (a step without the
    reset of ended episodes: what the rollout runs), jitted batched reset)."""
    task = double_pendulum.make(episode_length=EPISODE)
    return (task, jax.jit(jax.vmap(task.transition), compiler_options=PRODUCTION),
            jax.jit(jax.vmap(task.reset), compiler_options=PRODUCTION))


def _where(done, a, b):
    """Per env (leading axis), `a` where `done` else `b`, over matching trees."""
    return jax.tree.map(lambda x, y: jnp.where(
        jnp.reshape(jnp.asarray(done), (N,) + (1,) * (x.ndim - 1)), x, y), a, b)


def _default(task, n=N):
    return jnp.broadcast_to(jnp.asarray(task.default_context, jnp.float32),
                            (n, task.space.dim))


# --- registry and imports ------------------------------------------------------------------


def test_core_and_gymnax_tasks_do_not_import_brax(tmp_path):
    """In a fresh interpreter: importing distillax and its envs, and building a gymnax task,
    leaves brax, mujoco and MuJoCo Playground unimported, while the brax tasks are listed by
    name."""
    import subprocess

    code = ("import sys, distillax, distillax.envs as e; e.make_task('cartpole'); "
            "assert {'ant-goal', 'reacher-target', 'double-pendulum-physics', "
            "'double-pendulum'} <= set(e.names()); "
            "print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('brax', 'mujoco', 'mujoco_playground')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout
    # ...and building a brax task does import it (the test could fail)
    make_task("reacher-target")
    assert "brax" in sys.modules and "mujoco.mjx" in sys.modules


def test_task_shapes_and_spaces():
    ant, reacher, dpp = (make_task(n) for n in ("ant-goal", "reacher-target",
                                                 "double-pendulum-physics"))
    # ant: q [15] + qd [14] with the torso position kept; 8 torques; brax's 1000 steps
    assert (ant.obs_dim, ant.action_dim, ant.discrete, ant.max_steps) == (29, 8, False, 1000)
    assert ant.space.names == ("goal_angle",)
    np.testing.assert_allclose([ant.space.low[0], ant.space.high[0]], [0.0, 2 * math.pi])
    assert (reacher.obs_dim, reacher.action_dim, reacher.max_steps) == (11, 2, 1000)
    assert reacher.space.low == (-0.14, -0.14) and reacher.space.high == (0.14, 0.14)
    assert (dpp.obs_dim, dpp.action_dim, dpp.max_steps) == (8, 1, 1000)
    assert dpp.space.names == double_pendulum.NAMES
    # defaults: brax's compiled model (0.6 m poles, MuJoCo's density-1000 masses, g = 9.81)
    np.testing.assert_allclose(dpp.default_context,
                               [0.6, 0.6, 4.1987386, 4.1987386, 10.471975, 9.81], rtol=1e-6)
    # ranges: lengths 0.75-1.25x, masses and gravity 0.5-1.5x the default
    np.testing.assert_allclose(dpp.space.low, [0.45, 0.45, 2.0993693, 2.0993693, 5.2359877,
                                               4.905], rtol=1e-6)
    np.testing.assert_allclose(dpp.space.high, [0.75, 0.75, 6.2981079, 6.2981079, 15.707963,
                                                14.715], rtol=1e-6)
    one = make_task("double-pendulum")
    assert one.space.tasks == (dpp.default_context,)


# --- the adapter reproduces brax -------------------------------------------------------------


def test_default_context_reproduces_brax_reset_step_and_time_limit(dp):
    """At the default context, `double-pendulum-physics` is brax's inverted_double_pendulum
    under brax's EpisodeWrapper, with a fresh brax reset (the reset half of the same key)
    at every episode end, as the rollout restarts ended episodes (`transition`, then
    `reset` with the reset half of the step key): the same resets bit for bit, the same
    terminations and truncations, obs and rewards to float32 rounding. (Each env carries
    its own copy of the model fields a context sets, so XLA fuses the step differently from
    brax's constant model: ~1e-6 per step. That those fields equal brax's exactly at the default is
    `test_physics_fields_of_a_context_by_hand`.)

    Actions are uniform in [-1.5, 1.5] (a third out of range: brax gets them clipped),
    scaled by 0.3 so some episodes survive the 20-step limit and others fall."""
    task, transition, reset = dp
    ctx = _default(task)
    ref = EpisodeWrapper(VmapWrapper(InvertedDoublePendulum(backend="mjx")), EPISODE, 1)
    ref_step = jax.jit(ref.step, compiler_options=PRODUCTION)
    ref_reset = jax.jit(ref.reset, compiler_options=PRODUCTION)
    keys = jax.random.split(jax.random.PRNGKey(0), N)
    obs, st = reset(keys, ctx)
    rs = ref_reset(keys)
    np.testing.assert_array_equal(obs, rs.obs)
    T = 60
    actions = 0.3 * jax.random.uniform(jax.random.PRNGKey(1), (T, N, 1), minval=-1.5,
                                       maxval=1.5)
    step_keys = jax.random.split(jax.random.PRNGKey(2), T * N).reshape(T, N, 2)
    terms, truncs = 0, 0
    for t in range(T):
        out = transition(step_keys[t], st, actions[t], ctx)
        nxt = ref_step(rs, jnp.clip(actions[t], -1, 1))
        np.testing.assert_allclose(out.final_obs, nxt.obs, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.reward, nxt.reward, rtol=1e-5)
        trunc = np.asarray(nxt.info["truncation"]) > 0
        done = np.asarray(nxt.done) > 0
        np.testing.assert_array_equal(np.asarray(out.terminated), done & ~trunc)
        np.testing.assert_array_equal(np.asarray(out.truncated & ~out.terminated), trunc)
        # ended envs restart from the reset with the reset half of the step key: brax's
        reset_keys = jax.vmap(lambda k: jax.random.split(k)[1])(step_keys[t])
        fresh = ref_reset(reset_keys)
        rs = _where(done, fresh, nxt)
        obs_re, st_re = reset(reset_keys, ctx)
        np.testing.assert_array_equal(np.where(done[:, None], obs_re, 0),
                                      np.where(done[:, None], fresh.obs, 0))  # resets: exact
        np.testing.assert_allclose(_where(done, obs_re, out.obs), rs.obs, rtol=1e-4, atol=1e-5)
        st = _where(done, st_re, out.state)
        terms += int(np.sum(done & ~trunc))
        truncs += int(np.sum(trunc))
    assert terms >= 1 and truncs >= 1, (terms, truncs)  # both kinds of episode end happened


# --- contexts change the physics ------------------------------------------------------------


def test_physics_fields_of_a_context_by_hand():
    """The System of context (l1, l2, m1, m2, mc, g) = (0.5, 0.7, 3, 5, 8, 12).

    Capsule inertia per unit mass, radius r = 0.045, cylinder length l, h = l / 2:
    Vc = pi r^2 2h, Vs = 4/3 pi r^3 = 3.81704e-4;
    I_perp = [Vc (3r^2 + 4h^2) / 12 + Vs (2r^2/5 + h^2 + 3hr/4)] / (Vc + Vs).
    l = 0.5: Vc = 3.18086e-3, I_perp = 0.0267404, I_axis = 9.9080e-4; times m1 = 3:
    (0.0802213, 0.0802213, 0.00297241). l = 0.7 times m2 = 5: (0.243717, 0.243717,
    0.00498257). At the default (l = 0.6, m = 4.1987386) the formula gives MuJoCo's
    compiled (0.15497068, 0.15497068, 0.00417393).
    """
    base = double_pendulum._env().sys
    c = jnp.asarray([0.5, 0.7, 3.0, 5.0, 8.0, 12.0])
    sys = jax.jit(lambda c: double_pendulum.physics(base, c))(c)
    np.testing.assert_allclose(sys.body_mass, [0.0, 8.0, 3.0, 5.0], rtol=1e-6)
    np.testing.assert_allclose(sys.body_inertia[2], [0.0802213, 0.0802213, 0.00297241],
                               rtol=1e-5)
    np.testing.assert_allclose(sys.body_inertia[3], [0.243717, 0.243717, 0.00498257],
                               rtol=1e-5)
    np.testing.assert_allclose(sys.body_inertia[1], base.body_inertia[1])  # the cart's: as is
    np.testing.assert_allclose(sys.body_ipos[2:], [[0, 0, 0.25], [0, 0, 0.35]], rtol=1e-6)
    np.testing.assert_allclose(sys.body_pos[3], [0, 0, 0.5], rtol=1e-6)  # pole 2 on pole 1's end
    np.testing.assert_allclose(sys.geom_size[3:, 1], [0.25, 0.35], rtol=1e-6)
    np.testing.assert_allclose(sys.geom_pos[3:], [[0, 0, 0.25], [0, 0, 0.35]], rtol=1e-6)
    np.testing.assert_allclose(sys.site_pos[0], [0, 0, 0.7], rtol=1e-6)  # the tip
    np.testing.assert_allclose(sys.opt.gravity, [1e-5, 0.0, -12.0], rtol=1e-6)
    np.testing.assert_allclose(
        4.1987386 * double_pendulum._per_mass_inertia(jnp.float32(0.6)),
        [0.15497068, 0.15497068, 0.00417393], rtol=1e-6)
    # the default context changes no field at all
    d = double_pendulum.physics(base, jnp.asarray(make_task("double-pendulum-physics")
                                                  .default_context, jnp.float32))
    assert _leaves_differ(d, base) == []


def test_context_changes_the_trajectory(dp):
    """Same start, keys and (zero) actions in four contexts: the default; gravity 1.5x;
    poles 1.25x longer; pole 2 1.5x heavier. A pendulum falls with angular acceleration
    ~ g / l, so higher gravity tips it further in the same time and longer poles less."""
    task, transition, reset = dp
    d = np.asarray(task.default_context, np.float32)
    ctx = np.stack([d, d, d, d])
    ctx[1, 5] *= 1.5  # gravity
    ctx[2, :2] *= 1.25  # both lengths
    ctx[3, 3] *= 1.5  # mass of pole 2
    ctx = jnp.asarray(ctx)
    keys = jnp.broadcast_to(jax.random.PRNGKey(4), (N, 2))  # the same start in every env
    _, st = reset(keys, ctx)
    tilt = []
    for _ in range(12):
        out = transition(keys, st, jnp.zeros((N, 1)), ctx)
        st = out.state
        tilt.append(np.abs(np.asarray(out.final_obs[:, 1])))  # |sin(hinge 1)|
    tilt = np.asarray(tilt)[-1]
    assert not np.asarray(out.terminated).any()
    assert tilt[1] > 1.2 * tilt[0] and tilt[2] < tilt[0], tilt
    assert abs(tilt[3] - tilt[0]) > 1e-4, tilt  # a heavier top pole moves differently


# --- bounded actions ------------------------------------------------------------------------


def test_out_of_range_action_steps_like_its_clipped_value(dp):
    """The env clips: a = (3.7, -2.5, 1.0, 0.4) steps exactly like (1, -1, 1, 0.4), in the
    next state and the reward; and an in-range action is untouched (0.4 != 1)."""
    task, transition, reset = dp
    ctx = _default(task)
    keys = jnp.broadcast_to(jax.random.PRNGKey(5), (N, 2))  # the same start in every env
    _, st = reset(keys, ctx)
    raw = jnp.asarray([[3.7], [-2.5], [1.0], [0.4]])
    a, b = transition(keys, st, raw, ctx), transition(keys, st, jnp.clip(raw, -1, 1), ctx)
    chex.assert_trees_all_equal(a, b)
    assert _leaves_differ(jax.tree.map(lambda x: x[0], a.state),
                          jax.tree.map(lambda x: x[2], a.state)) == []  # 3.7 acts as 1.0
    assert not np.allclose(a.final_obs[2], a.final_obs[3])  # 0.4 is not clipped to 1
    np.testing.assert_array_equal(dmjx.clip_action(jnp.asarray([-7.0, -1.0, 0.3, 2.0])),
                                  np.float32([-1.0, -1.0, 0.3, 1.0]))


# --- shard_map safety of the MJX loops (cheap, no MJX) -------------------------------------


def test_shard_map_safe_lax_fixes_loop_types_and_keeps_values():
    """A loop started from constants whose body makes them device-varying, and a cond with
    a literal branch (what MJX's solver does): plain `jax.lax` refuses them inside
    `shard_map`; `_ShardMapSafeLax` runs them with the values of the plain program."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = jax.make_mesh((1,), ("data",))
    lax = dmjx._ShardMapSafeLax()

    def program(lx):
        def f(x):
            def body(c):
                v, n, flag = c
                flag2 = lx.cond(v.sum() < 50.0, lambda o: o[0].sum() < 100.0,
                                lambda o: False, (v, n))
                return v * 2.0 + x, n + 1, flag2
            v, n, flag = lx.while_loop(lambda c: c[1] < 4, body, (jnp.ones(3), 0, True))
            s, _ = lx.scan(lambda c, _: (c + v, None), jnp.zeros(3), None, length=3)
            return s + n + flag
        return f

    x = jnp.arange(3.0)
    expected = jax.jit(program(jax.lax))(x)  # outside shard_map both agree
    np.testing.assert_array_equal(jax.jit(program(lax))(x), expected)
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    with pytest.raises(TypeError):
        jax.jit(jax.shard_map(program(jax.lax), mesh=mesh, in_specs=P("data"),
                              out_specs=P("data")))(xs)
    got = jax.jit(jax.shard_map(program(lax), mesh=mesh, in_specs=P("data"),
                                out_specs=P("data")))(xs)
    np.testing.assert_array_equal(got, expected)


# --- training: smoke runs and resume ------------------------------------------------------

TINY = dict(num_envs=4, num_steps=8, num_minibatches=2, update_epochs=1, hidden_sizes=(8,),
            kmeans_samples=200, context_candidates=4, eval_contexts=2, eval_every=1000,
            log_every=2, normalize_obs=True, seed=3)


def _check_trained(config, state, summary):
    """Finite losses every report, and params moved from the run's own initial params."""
    assert summary.history, "no reports"
    for r in summary.history:
        assert np.all(np.isfinite(np.asarray(r["loss"]))), r
        assert np.all(np.isfinite(np.asarray(r["teacher_return"]))), r
    init = init_state(build_model(config), jax.random.PRNGKey(config.seed))
    moved = _leaves_differ(init.params.teacher, state.params.teacher)
    assert len(moved) == len(jax.tree.leaves(init.params.teacher)), moved  # every leaf moved


@pytest.fixture(scope="module")
def dp_runs(tmp_path_factory):
    """double-pendulum-physics, method central, P = 2: a run to iteration 4 of 6 with
    checkpoints at 2 and 4, and a copy of its directory without the checkpoint at 4 resumed
    from 2 to 4 (what a run stopped at 2 and resumed does). No run reaches its end, so none
    compiles an evaluation program."""
    import shutil

    from distillax.checkpoint import restore_policies

    cfg = Config(task="double-pendulum-physics", method="central", partitions=2,
                 total_steps=4 * 8 * 6, checkpoint_every=2, **TINY)
    d_full, d_cut = (str(tmp_path_factory.mktemp(n)) for n in ("full", "cut"))
    full, summary = train(cfg.replace(checkpoint_dir=d_full), log=_quiet, stop_after=4)
    shutil.copytree(d_full, d_cut, dirs_exist_ok=True)
    shutil.rmtree(f"{d_cut}/4")
    _, at_2 = restore_policies(d_cut)
    resumed, _ = resume(d_cut, log=_quiet, stop_after=4)
    return cfg, full, summary, at_2, resumed


def test_double_pendulum_physics_trains(dp_runs):
    cfg, full, summary, at_2, _ = dp_runs
    assert int(full.iteration) == 4
    _check_trained(cfg, full, summary)
    assert _leaves_differ(at_2.teacher, full.params.teacher)  # iterations 3-4 changed them


def test_episode_ends_redraw_contexts_in_the_cell(dp_runs):
    """In the run's own rollouts (`rollout.reset_ended` over the MJX reset): exactly the envs
    whose episode ended carry a context other than their first, and every env's context is
    in its own teacher's cell."""
    cfg, full, *_ = dp_runs
    first = init_state(build_model(cfg), jax.random.PRNGKey(cfg.seed)).env.context
    ctx = np.asarray(full.env.context)  # [P, B, d]
    ended = np.asarray(full.env.episodes) > 0
    assert ended.any(), ended  # in 32 steps an untrained pendulum falls
    np.testing.assert_array_equal(np.any(ctx != np.asarray(first), -1), ended)
    cells = np.asarray(assign(full.partition, make_task(cfg.task).space, jnp.asarray(ctx)))
    np.testing.assert_array_equal(cells, np.broadcast_to(np.arange(2)[:, None], cells.shape))


def test_brax_run_resumes_bit_for_bit(dp_runs):
    """stop at 2, resume to 4 == the uninterrupted run at 4: every leaf of the state,
    including the MJX pipeline states and per-env contexts of the env carry."""
    _, full, _, _, resumed = dp_runs
    assert _leaves_differ(jax.tree.map(np.asarray, full),
                          jax.tree.map(np.asarray, resumed)) == []
    assert jax.tree.leaves(full.env.state.inner.pipeline_state)  # the MJX data was in it


def test_readme_brax_example_makes_an_unshipped_env_contextual():
    """The README's example, run as written: brax's inverted pendulum over gravity and pole
    mass. With the same start and no force, the pole tips further in the same time under 1.5x
    gravity (angular acceleration ~ g)."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"### A brax env of your own.*?```python\n(.*?)```", readme, re.S).group(1)
    exec(code, {})
    task = make_task("pendulum-gravity")
    ctx = jnp.asarray([[9.81, 1.0], [9.81 * 1.5, 1.0]], jnp.float32)
    keys = jnp.broadcast_to(jax.random.PRNGKey(1), (2, 2))

    @jax.jit  # one program: reset, then 10 unforced steps, in both contexts (transitions:
    def hinge_after_10(keys, ctx):  # an episode end would not be reset, and compiles none)
        _, st = jax.vmap(task.reset)(keys, ctx)

        def body(st, _):
            out = jax.vmap(task.transition)(keys, st, jnp.zeros((2, 1)), ctx)
            return out.state, out.obs[:, 1]

        return jax.lax.scan(body, st, None, length=10)[1][-1]

    tilt = np.abs(np.asarray(hinge_after_10(keys, ctx)))  # |hinge angle|
    assert tilt[1] > 1.2 * tilt[0] > 0, tilt
