"""The MuJoCo Playground adapter and tasks (the `playground` extra): at the default context
`cartpole-swingup-physics` is Playground's own CartpoleSwingup, contexts change its physics,
`reacher-easy-target` resets as Playground's reacher given Playground's target and rolls out
towards its context's target, the cart-pole trains, episode ends redraw within the cell, a
run resumes bit for bit, the README's example builds, videos draw, and without the extra a
Playground task is refused in one line.

MJX compilations are this file's cost (an MJX env's reset or step compiles for 2-4 s of CPU
on the 2-core machine, a training program for 15-25 s, most of it the training itself), so
it makes few: one program (`play`: the cart-pole with 16-step episodes and Playground's own
env side by side, each reset and step compiled once) serves the reproduction, trajectory and
video tests; one tiny seeded training run of the cart-pole serves its smoke run, the redraw
and the resume tests (its runs stop before their last iteration, so no evaluation program is
compiled; the resumed run's programs come from the persistent compilation cache,
tests/conftest.py). The reacher's smoke run is a seeded rollout in one small program, not a
second training program, and its reset logic runs eagerly with MJX's forward pass stubbed.
The README's example is built, not stepped (its physics goes through the same `contextual`
as the cart-pole's). The missing extra is faked in this process; the core's imports are
checked in a fresh interpreter by tests/test_brax.py, which lists `mujoco_playground` among
the modules it must not load.
"""

import math
import os
import pathlib
import re
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

pytest.importorskip("mujoco_playground", reason="the playground extra is not installed")

from test_brax import TINY, _check_trained, _leaves_differ, _quiet

from distillax import envs, render
from distillax.config import Config, validate
from distillax.contexts import assign, make_partition
from distillax.envs import cartpole_swingup, make_task, playground, reacher_easy, register
from distillax.model import build_model
from distillax.presets import preset
from distillax.run import resume, train
from distillax.trainer import init_state

pytestmark = pytest.mark.usefixtures("compile_cache")  # tests/conftest.py

N = 5  # envs played (a call each)
EPISODE = 16  # episode length of the shared cart-pole
T = 2 * EPISODE + 1  # steps it plays: every env's episode ends twice, and restarts twice


@struct.dataclass
class Played:
    """What `play` returns, leaves `[T, N, ...]`: ours (the adapter, as the rollout runs it:
    the reset of an env whose episode ended, then `transition`) and Playground's own (its
    `reset` with the same key, `step` of the clipped action). Rows at steps 0, 16 and 32
    begin an episode: there `reset_obs` / `ref_reset_obs` are the reset's observations (the
    env's key at step 0, else the reset half of the previous step's key)."""

    obs: jax.Array  # our final obs of the step
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    reset_obs: jax.Array
    ref_obs: jax.Array  # Playground's step obs
    ref_reward: jax.Array
    ref_done: jax.Array
    ref_reset_obs: jax.Array
    frames: dict  # the drawer's pick of each state acted on (geom poses, context sizes)


@pytest.fixture(scope="module")
def cp():
    """(the cart-pole with 16-step episodes, `play(keys [N, 2], contexts [N, 4], actions
    [T, N, 1]) -> Played`): one compiled program for every test of the env itself. It plays
    one env (the N envs are N calls: a vmapped program compiled 30% longer, for a
    millisecond's run), and each reset and step appears once in it: a reset is computed at
    every step and kept where the previous step ended the episode (and before step 0)."""
    task = cartpole_swingup.make(episode_length=EPISODE)
    env = cartpole_swingup._env()
    # jitted: each traces once (tracing MJX takes seconds), for `blank`'s shapes and the scan
    ref_reset, ref_step, reset = jax.jit(env.reset), jax.jit(env.step), jax.jit(task.reset)
    pick = render.drawer_for(task).pick

    @jax.jit
    def one(key, ctx, actions, step_keys):
        reset_keys = jnp.concatenate(
            [key[None], jax.vmap(lambda k: jax.random.split(k)[1])(step_keys[:-1])])
        blank = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
            lambda: (reset(key, ctx)[1], ref_reset(key))))

        def body(carry, xs):
            st, ref, ended = carry
            a, k, k_reset = xs
            obs_re, st_re = reset(k_reset, ctx)
            ref_re = ref_reset(k_reset)
            st, ref = jax.tree.map(lambda x, y: jnp.where(ended, x, y), (st_re, ref_re),
                                   (st, ref))
            out = task.transition(k, st, a, ctx)
            nxt = ref_step(ref, jnp.clip(a, -1.0, 1.0))
            row = dict(obs=out.final_obs, reward=out.reward, terminated=out.terminated,
                       truncated=out.truncated, reset_obs=obs_re, ref_obs=nxt.obs,
                       ref_reward=nxt.reward, ref_done=nxt.done, ref_reset_obs=ref_re.obs,
                       frames=pick(task, st, ctx))
            return (out.state, nxt, out.terminated | out.truncated), row

        carry = (*blank, jnp.ones((), bool))
        return jax.lax.scan(body, carry, (actions, step_keys, reset_keys))[1]

    def play(keys, ctx, actions):
        step_keys = jax.random.split(jax.random.PRNGKey(2), T * N).reshape(T, N, 2)
        rows = [one(keys[i], ctx[i], actions[:, i], step_keys[:, i]) for i in range(N)]
        return Played(**jax.tree.map(lambda *xs: np.stack(xs, axis=1), *rows))

    return task, play


def _default(task, n=N):
    return jnp.broadcast_to(jnp.asarray(task.default_context, jnp.float32),
                            (n, task.space.dim))


def test_implementation_is_jax_without_a_cuda_gpu():
    """No GPU here: MJX's JAX pipeline (Playground's default, warp, needs NVIDIA)."""
    assert jax.default_backend() == "cpu"
    assert playground.default_impl() == "jax"
    assert cartpole_swingup._env().mjx_model.impl.value == "jax"


def test_tasks_are_registered_once_with_shapes_spaces_and_drawers():
    """Each task is one `envs.Task` of its module, listed in `envs.SHIPPED` with its extra;
    its preset, drawer and spaces."""
    for name, module in [("cartpole-swingup-physics", cartpole_swingup),
                         ("reacher-easy-target", reacher_easy)]:
        assert envs.SHIPPED[name] == (module.__name__.rsplit(".", 1)[1], "playground")
        assert envs.task(name) is module.TASKS[name] and envs.shipped(name)
        assert envs.task(name).drawer is module.DRAWER and preset(name)["task"] == name
    cart, reach = make_task("cartpole-swingup-physics"), make_task("reacher-easy-target")
    # cart-pole: cart x, pole cos / sin, 2 velocities; one motor; Playground's 1000 steps
    assert (cart.obs_dim, cart.action_dim, cart.discrete, cart.max_steps) == (5, 1, False, 1000)
    assert cart.space.names == cartpole_swingup.NAMES
    np.testing.assert_allclose(cart.default_context, [1.0, 0.1, 9.81, 1.0], rtol=1e-6)
    np.testing.assert_allclose(cart.space.low, [0.5, 0.05, 4.905, -1.0], rtol=1e-6)
    np.testing.assert_allclose(cart.space.high, [1.5, 0.15, 14.715, 1.0], rtol=1e-6)
    assert cart.space.values[3] == (-1.0, 1.0)
    # reacher: 2 joint angles, fingertip-to-target, 2 velocities; 2 motors
    assert (reach.obs_dim, reach.action_dim, reach.max_steps) == (6, 2, 1000)
    assert reach.space.cyclic == (True, False)
    np.testing.assert_allclose([*reach.space.low, *reach.space.high],
                               [0.0, 0.05, 2 * math.pi, 0.2], rtol=1e-6)
    # the reacher drawer's target mark, where Playground puts it: radius (sin angle, cos angle)
    np.testing.assert_allclose(reacher_easy.target_xy(jnp.asarray([math.pi / 2, 0.1])),
                               [0.1, 0.0], atol=1e-7)


def test_bad_playground_envs_are_refused_naming_the_field():
    """An env that repeats actions, and a time limit under one step, are refused with the
    field and its value (built, not compiled)."""
    space = cartpole_swingup.SPACE
    with pytest.raises(ValueError, match="action_repeat = 2 is not supported"):
        playground.contextual("x", playground.load("CartpoleSwingup", action_repeat=2), space,
                              cartpole_swingup._DEFAULT)
    with pytest.raises(ValueError, match="episode_length = 0 is invalid"):
        playground.contextual("x", cartpole_swingup._env(), space, cartpole_swingup._DEFAULT,
                              episode_length=0)


def test_presets_validate_and_the_cartpole_cells_split_at_the_gear_sign():
    """Both presets are valid configs; the cart-pole's 2 k-means cells (its preset's) are
    the two gear signs: in the scaled space the sign is 0 or 1, the widest gap (k-means on
    the preset's 10,000 samples of rho)."""
    for name in ("cartpole-swingup-physics", "reacher-easy-target"):
        validate(Config(**preset(name)))
    cfg = Config(**preset("cartpole-swingup-physics"))
    space = make_task(cfg.task).space
    part = make_partition(jax.random.PRNGKey(0), space, cfg.partitioner, cfg.partitions,
                          cfg.kmeans_samples)
    c = space.sample(jax.random.PRNGKey(1), (256,))
    cells, plus = np.asarray(assign(part, space, c)), np.asarray(c[:, 3]) > 0
    assert len(set(cells[plus])) == len(set(cells[~plus])) == 1, cells
    assert cells[plus][0] != cells[~plus][0]


# --- the adapter reproduces Playground ------------------------------------------------------


def test_default_context_reproduces_playground_reset_step_and_time_limit(cp):
    """At the default context, `cartpole-swingup-physics` is Playground's CartpoleSwingup,
    with a fresh Playground reset (the reset half of the same step key) at every episode end,
    as the rollout restarts ended episodes: every reset bit for bit, obs and rewards to
    float32 rounding (each env carries its own copy of the model fields a context sets, so
    XLA fuses the step differently from Playground's constant model), no termination
    (swing-up ends only on a non-finite state) and a truncation at every 16th step.

    Actions are uniform in [-1.5, 1.5]: a third out of range, which Playground gets clipped
    (so the adapter's clip matches Playground's bound)."""
    task, play = cp
    keys = jax.random.split(jax.random.PRNGKey(0), N)
    actions = jax.random.uniform(jax.random.PRNGKey(1), (T, N, 1), minval=-1.5, maxval=1.5)
    p = jax.tree.map(np.asarray, play(keys, _default(task), actions))
    starts = [0, EPISODE, 2 * EPISODE]
    np.testing.assert_array_equal(p.reset_obs[starts], p.ref_reset_obs[starts])
    assert len({p.reset_obs[t].tobytes() for t in starts}) == 3  # three different resets
    np.testing.assert_allclose(p.obs, p.ref_obs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.reward, p.ref_reward, rtol=1e-5, atol=1e-6)
    assert not p.terminated.any() and not p.ref_done.any()
    want = np.zeros((T, N), bool)
    want[[EPISODE - 1, 2 * EPISODE - 1]] = True  # steps 16 and 32 of every env
    np.testing.assert_array_equal(p.truncated, want)


# --- contexts change the physics ------------------------------------------------------------


def test_physics_fields_of_a_context_by_hand():
    """The model of context (pole_length, pole_mass, gravity, gear_sign) = (0.5, 0.15, 12,
    -1).

    Capsule inertia per unit mass, radius r = 0.045, cylinder length l, h = l / 2:
    Vc = pi r^2 2h, Vs = 4/3 pi r^3 = 3.81704e-4;
    I_perp = [Vc (3r^2 + 4h^2) / 12 + Vs (2r^2/5 + h^2 + 3hr/4)] / (Vc + Vs),
    I_axis = [Vc r^2 / 2 + Vs 2 r^2 / 5] / (Vc + Vs).
    l = 0.5: Vc = 3.18086e-3, I_perp = 0.0267404, I_axis = 9.90804e-4; times 0.15 kg:
    (0.00401106, 0.00401106, 1.48621e-4). At the default (l = 1, 0.1 kg) the formula gives
    MuJoCo's compiled (0.00942459, 0.00942459, 1.00104e-4).
    """
    base = cartpole_swingup._env().mjx_model
    c = jnp.asarray([0.5, 0.15, 12.0, -1.0])
    m = jax.jit(lambda c: cartpole_swingup.physics(base, c))(c)
    np.testing.assert_allclose(m.body_mass, [0.0, 1.0, 0.15], rtol=1e-6)
    np.testing.assert_allclose(m.body_inertia[2], [0.00401106, 0.00401106, 1.48621e-4],
                               rtol=1e-5)
    np.testing.assert_array_equal(m.body_inertia[1], base.body_inertia[1])  # the cart's
    np.testing.assert_allclose(m.body_ipos[2], [0, 0, 0.25], rtol=1e-6)
    np.testing.assert_allclose(m.geom_size[4], [0.045, 0.25, 0.0], rtol=1e-6)
    np.testing.assert_allclose(m.geom_pos[4], [0, 0, 0.25], rtol=1e-6)
    np.testing.assert_allclose(m.opt.gravity, [0.0, 0.0, -12.0], rtol=1e-6)
    np.testing.assert_allclose(m.actuator_gear[0, 0], -10.0)
    np.testing.assert_allclose(base.body_inertia[2], [0.00942459, 0.00942459, 1.00104e-4],
                               rtol=1e-5)
    # the default context changes no field at all
    default = make_task("cartpole-swingup-physics").default_context
    d = cartpole_swingup.physics(base, jnp.asarray(default, jnp.float32))
    assert _leaves_differ(d, base) == []


def _pushed(play, task):
    """`Played` of five contexts from the same start and keys, the cart pushed with a = +1:
    the default; gravity 1.5x; the pole 1.5x longer; the pole 1.5x heavier; the gear's
    sign -1. Contexts `[N, 4]` too."""
    d = np.asarray(task.default_context, np.float32)
    ctx = np.stack([d] * N)
    ctx[1, 2] *= 1.5  # gravity
    ctx[2, 0] *= 1.5  # length
    ctx[3, 1] *= 1.5  # mass
    ctx[4, 3] = -1.0  # gear sign
    keys = jnp.broadcast_to(jax.random.PRNGKey(4), (N, 2))  # the same start in every env
    return jax.tree.map(np.asarray, play(keys, jnp.asarray(ctx), jnp.ones((T, N, 1)))), ctx


def test_context_changes_the_trajectory(cp):
    """After 10 steps (0.1 s) of a = +1 from the same start: the hanging pole lags the cart;
    about the pivot, `theta'' = -(3 / 2l) (a_cart cos theta + g sin theta)` for a uniform
    rod, so it swings less under more gravity (which pulls it back) and less when longer (a
    larger inertia about the pivot); a heavier pole slows the cart; the sign -1 pushes the
    cart the other way."""
    task, play = cp
    p, _ = _pushed(play, task)
    x = p.obs[9, :, 0] - p.reset_obs[0, :, 0]  # cart displacement
    swing = p.obs[9, :, 2] - p.reset_obs[0, :, 2]  # change of the pole's sin
    assert x[0] > 0.03 and abs(swing[0]) > 0.01, (x, swing)
    assert abs(swing[1]) < abs(swing[0]) and abs(swing[2]) < abs(swing[0]), swing
    assert x[3] < x[0], x  # the heavier pole: less cart motion for the same force
    np.testing.assert_allclose(x[4], -x[0], rtol=0.05)  # the mirror image, up to the start
    assert np.sign(swing[4]) == -np.sign(swing[0])


# --- the reacher's target ----------------------------------------------------------------


def test_reacher_reset_is_playground_reset_given_playground_target(monkeypatch):
    """`reset_task` with the target Playground itself draws from the key (angle from the
    fourth fifth of the key, radius from the fifth) is Playground's reset, every leaf; and
    a target of our own lands at `radius (sin angle, cos angle)`, the arm unchanged. MJX's
    forward pass is stubbed (identity: the reset logic runs eagerly in milliseconds; the
    physics is Playground's, untouched, and the smoke run below runs it)."""
    from mujoco_playground._src.dm_control_suite import reacher

    monkeypatch.setattr(reacher.mjx, "forward", lambda model, data: data)
    env = reacher_easy._env()
    key = jax.random.PRNGKey(3)
    _, _, _, k_angle, k_radius = jax.random.split(key, 5)
    angle = jax.random.uniform(k_angle, ()) * 2 * jnp.pi
    radius = jax.random.uniform(k_radius, (), minval=0.05, maxval=0.2)
    ours, theirs = env.reset_task(key, jnp.stack([angle, radius])), env.reset(key)
    assert _leaves_differ(ours, theirs) == []
    mine = env.reset_task(key, jnp.asarray([math.pi / 2, 0.1]))  # +x, 0.1 m
    np.testing.assert_allclose(mine.data.mocap_pos[0], [0.1, 0.0, 0.01], atol=1e-6)
    np.testing.assert_array_equal(mine.data.qpos, theirs.data.qpos)
    assert not np.allclose(mine.data.mocap_pos, theirs.data.mocap_pos)


# --- training: smoke runs and resume ------------------------------------------------------

SHORT = "cartpole-swingup-physics-16"  # the cart-pole with 16-step episodes (registered below)


@pytest.fixture(scope="module")
def cp_runs(tmp_path_factory):
    """The cart-pole with 16-step episodes, method central, P = 2, seeded: a run to
    iteration 4 of 6 with checkpoints at 2 and 4 (32 steps per env: every env's episode ends
    twice), and a copy of its directory without the checkpoint at 4 resumed from 2 to 4.
    The short task is registered for this module's tests only (the registry is
    process-wide)."""
    register(SHORT, lambda: cartpole_swingup.make(episode_length=EPISODE))
    cfg = Config(task=SHORT, method="central", partitions=2, total_steps=4 * 8 * 6,
                 checkpoint_every=2, **TINY)
    d_full, d_cut = (str(tmp_path_factory.mktemp(n)) for n in ("full", "cut"))
    full, summary = train(cfg.replace(checkpoint_dir=d_full), log=_quiet, stop_after=4)
    shutil.copytree(d_full, d_cut, dirs_exist_ok=True)
    shutil.rmtree(f"{d_cut}/4")
    resumed, _ = resume(d_cut, log=_quiet, stop_after=4)
    yield cfg, full, summary, resumed
    envs.TASKS.pop(SHORT)


def test_cartpole_swingup_trains(cp_runs):
    cfg, full, summary, _ = cp_runs
    assert int(full.iteration) == 4
    _check_trained(cfg, full, summary)


def test_episode_ends_redraw_contexts_in_the_cell(cp_runs):
    """In the run's own rollouts: every env's episode ended (twice, at 16 and 32 steps), so
    every env carries a context other than its first, and every context is in its own
    teacher's cell (both gear signs are drawn across the cells)."""
    cfg, full, *_ = cp_runs
    first = init_state(build_model(cfg), jax.random.PRNGKey(cfg.seed)).env.context
    ctx = np.asarray(full.env.context)  # [P, B, d]
    np.testing.assert_array_equal(np.asarray(full.env.episodes), 2)
    assert np.all(np.any(ctx != np.asarray(first), -1))
    cells = np.asarray(assign(full.partition, make_task(cfg.task).space, jnp.asarray(ctx)))
    np.testing.assert_array_equal(cells, np.broadcast_to(np.arange(2)[:, None], cells.shape))
    # the model each env steps is its context's: the pole's length in its MJX data
    data = full.env.state.inner.data
    pole = np.linalg.norm(np.asarray(data.geom_xpos[..., 4, :] - data.xpos[..., 2, :]), axis=-1)
    np.testing.assert_allclose(pole, ctx[..., 0] / 2, rtol=1e-4)  # the capsule's centre


def test_playground_run_resumes_bit_for_bit(cp_runs):
    """stop at 2, resume to 4 == the uninterrupted run at 4: every leaf of the state,
    including the MJX data and per-env contexts of the env carry."""
    _, full, _, resumed = cp_runs
    assert _leaves_differ(jax.tree.map(np.asarray, full),
                          jax.tree.map(np.asarray, resumed)) == []
    assert jax.tree.leaves(full.env.state.inner.data)  # the MJX data was in it


def test_reacher_easy_target_seeded_rollout():
    """The reacher's smoke run: a seeded rollout of `reacher-easy-target` through the adapter
    and MJX, in two contexts, 12 steps of a fixed torque from one key (a training run of its
    own would compile a second training program, 20-40 s here: the cart-pole's run above
    trains through the same adapter, and brax's reacher-target through the same `reset_task`
    route). Each env's target (its mocap body) is its context's from the reset on; the
    observation's fingertip-to-target is the target minus the fingertip; the arm moves; the
    reward is 1 exactly where the fingertip is within 0.06 m of the target, else 0."""
    task = make_task("reacher-easy-target")
    env = reacher_easy._env()
    finger, target = env._finger_geom_id, env._target_geom_id

    @jax.jit
    def run(key, c):
        obs, st = task.reset(key, c)

        def body(st, _):
            out = task.transition(key, st, jnp.asarray([1.0, -1.0]), c)
            data = out.state.inner.data
            return out.state, (out.obs, out.reward, out.terminated, data.geom_xpos,
                               data.mocap_pos[0])

        return obs, st.inner.data.mocap_pos[0], jax.lax.scan(body, st, None, length=12)[1]

    key = jax.random.PRNGKey(5)
    for c in ([math.pi / 2, 0.1], [math.pi, 0.2]):  # +x at 0.1 m; -y at 0.2 m
        c = jnp.asarray(c, jnp.float32)
        first, mocap0, (obs, reward, terminated, xpos, mocap) = jax.tree.map(
            np.asarray, run(key, c))
        want = np.asarray(reacher_easy.target_xy(c))
        np.testing.assert_allclose(mocap0[:2], want, atol=1e-6)
        np.testing.assert_allclose(mocap[:, :2], np.broadcast_to(want, (12, 2)), atol=1e-6)
        np.testing.assert_allclose(xpos[:, target, :2], mocap[:, :2], atol=1e-6)
        to_target = xpos[:, target, :2] - xpos[:, finger, :2]
        np.testing.assert_allclose(obs[:, 2:4], to_target, atol=1e-6)
        assert np.abs(obs[-1, :2] - first[:2]).max() > 0.01  # the joints turned
        near = np.linalg.norm(to_target, axis=-1) <= 0.06
        np.testing.assert_array_equal(reward, near.astype(np.float32))
        assert not terminated.any()


# --- videos ---------------------------------------------------------------------------------


def test_cartpole_video_draws_each_context_pole(cp, tmp_path):
    """The drawer of `cartpole-swingup-physics` (the MuJoCo geom projection) picks the geom
    poses of Playground's MJX data and each env's own capsule sizes (the pole's half-length
    is half the context's length), and draws a GIF of them: the frames of the shared
    program's pushed contexts, no recording program compiled."""
    task, play = cp
    p, ctx = _pushed(play, task)
    np.testing.assert_allclose(p.frames["size"][0, :, 4, 1], ctx[:, 0] / 2, rtol=1e-6)
    # the pole's capsule centre is half its length from the hinge (the cart's centre)
    centre = np.linalg.norm(p.frames["pos"][0, :, 4] - p.frames["pos"][0, :, 3], axis=-1)
    np.testing.assert_allclose(centre, ctx[:, 0] / 2, rtol=1e-4)
    K, steps = 2, 3  # the default and the 1.5x longer pole, 3 steps each
    two = jax.tree.map(lambda x: np.stack([x[:steps, [0, 2]]] * 2), p.frames)  # [2, T, K]
    rec = render.Recording(frames=two, alive=np.ones((2, steps, K), bool),
                           returns=np.zeros((2, K)), teacher=np.zeros(K, int),
                           contexts=ctx[[0, 2]])
    images = render.video_frames(task, rec, 1, ("central", "teacher T0"), "caption")
    path = str(tmp_path / "v.gif")
    render.write_gif(path, images)
    assert len(images) == steps and os.path.getsize(path) > 1000
    assert len(set(images[-1].convert("L").get_flattened_data())) > 2  # something is drawn


# --- the README's example, and the missing extra ---------------------------------------------


def test_readme_playground_example_makes_an_unshipped_env_contextual():
    """The README's example, run as written: Playground's PendulumSwingup over gravity is a
    registered task whose model at a context has that gravity and is otherwise
    Playground's (stepping it goes through the same `contextual` as the cart-pole's, which
    the tests above step)."""
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"### A MuJoCo Playground env of your own.*?```python\n(.*?)```", readme,
                     re.S).group(1)
    exec(code, {})
    task = make_task("pendulum-gravity-playground")
    assert (task.obs_dim, task.action_dim, task.space.names) == (3, 1, ("gravity",))
    assert task.env.inner_env.mjx_model.impl.value == "jax"
    base = task.env.base_model
    model = task.env.system(jnp.asarray([14.7], jnp.float32))
    np.testing.assert_allclose(model.opt.gravity, [0.0, 0.0, -14.7], rtol=1e-6)
    assert _leaves_differ(model.replace(opt=base.opt), base) == []  # nothing else changed


def test_a_missing_extra_is_refused_in_one_line_before_any_compute(monkeypatch, capsys,
                                                                  tmp_path):
    """With Playground made unimportable (as where the extra is not installed), training a
    Playground task from the command line stops at validation, before anything is built or
    written (no run directory), with one line naming the extra, exit status 2."""
    for name in ("distillax.envs.reacher_easy", "distillax.envs.playground"):
        monkeypatch.delitem(sys.modules, name)  # imported again, and failing, below
    monkeypatch.setitem(sys.modules, "mujoco_playground", None)
    envs._shipped.cache_clear()  # the task's record was cached when its module imported
    out_dir = tmp_path / "run"
    from distillax import cli

    try:
        status = cli.main(["--task", "reacher-easy-target", "--checkpoint-dir", str(out_dir)])
    finally:
        envs._shipped.cache_clear()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert line.startswith("error: config field `task` = 'reacher-easy-target' is invalid: "
                           "task `reacher-easy-target` needs the playground extra: pip "
                           "install 'distillax[playground]' ("), line
    assert not out_dir.exists()
