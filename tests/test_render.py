"""Rollout animations: every shipped task records and draws a multi-frame GIF, the recorded
returns are the evaluator's, the contexts spread over the partitions, and `evaluate --video`
writes them next to the tables.

Policies are freshly initialised (no training) and episodes capped at a few steps: what is
tested is the recording and the drawing, not the policies. A brax task's recording costs a
compile of its MJX reset and step (25-50 s on the 2-core CPU, whatever the episode's
length), so one brax task records through MJX (`double-pendulum-physics`) and the others
through `_Kinematics`: their MuJoCo models held at the initial pose, which their drawers draw
as they would MJX's.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from PIL import Image

from distillax import checkpoint, envs, evaluate, evaluation, normalizer, render
from distillax.config import Config
from distillax.contexts import make_partition
from distillax.evaluation import episode_returns
from distillax.model import build_model
from distillax.policy import Policies, central_policy, own_cell, teacher_policy
from distillax.trainer import init_state
from distillax.xla import RUN_ONCE

BRAX = ("double-pendulum-physics", "double-pendulum", "reacher-target", "ant-goal")
# `double-pendulum` is `double-pendulum-physics`' env with one shared System, drawn by the
# same drawer (asserted below): one video of the two, a compile of an MJX step saved
VIDEOS = ("double-pendulum-physics", "reacher-target", "ant-goal")
GYMNAX = ("cartpole", "cartpole-v1", "pendulum", "pointgoal", "fourrooms")
# the `playground` extra's: their drawers and a video are tested in test_playground.py
PLAYGROUND = ("cartpole-swingup-physics", "reacher-easy-target")


def _fresh(task: str, partitions: int = 1):
    """(model, untrained policies) of a tiny config of `task`: one cell per task of a task
    set, else `partitions` cells by k-means (one needs no clustering)."""
    tasks = envs.make_task(task).space.tasks
    P = len(tasks) if tasks else partitions
    config = Config(task=task, partitions=P, partitioner="tasks" if tasks else "kmeans",
                    hidden_sizes=(8,), num_envs=8, num_steps=8, kmeans_samples=200)
    model = build_model(config)
    key = jax.random.PRNGKey(0)
    teacher, central = jax.jit(model.init_params, compiler_options=RUN_ONCE)(key)
    obs = model.env.obs_dim
    return model, Policies(teacher, central, normalizer.init_stats((P, obs)),
                           normalizer.init_stats((obs,)),
                           make_partition(key, model.env.space, config.partitioner, P, 200))


def _check_gif(path: str, frames: int) -> None:
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == frames
        w, h = im.size
        assert w > 500 and h > 150
        im.seek(frames - 1)
        assert len(set(im.convert("L").getdata())) > 2  # something is drawn


def test_every_shipped_task_has_a_drawer():
    assert set(envs.SHIPPED) == set(BRAX) | set(GYMNAX) | set(PLAYGROUND)
    assert all(envs.task(name).drawer is not None for name in set(BRAX) | set(GYMNAX))
    assert envs.task("double-pendulum").drawer is envs.task("double-pendulum-physics").drawer


def _video(task: str, out: str, steps: int, still: bool = False) -> dict:
    """Record and draw the default context of `task` (`still`: through `_Kinematics`)."""
    model, pol = _fresh(task)
    if still:
        model = dataclasses.replace(model, env=dataclasses.replace(
            model.env, env=_Kinematics(model.env.env)))
    contexts = np.asarray([model.env.default_context], np.float32)
    (v,) = render.write_videos(out, model, pol, contexts, jax.random.PRNGKey(1), steps=steps,
                               size=260)
    return v


@struct.dataclass
class _Pose:  # the two fields of an MJX `Data` that a brax drawer reads
    geom_xpos: jax.Array  # [G, 3]
    geom_xmat: jax.Array  # [G, 3, 3]


@struct.dataclass
class _Inner:
    pipeline_state: _Pose


@struct.dataclass
class _Still:
    inner: _Inner
    time: jax.Array


class _Kinematics:
    """A brax task's inner env whose reset and step hold its MuJoCo model at the initial
    pose, computed once by MuJoCo's own (C) kinematics; everything else is the task's. The
    recording and the drawing run as for MJX states, but nothing compiles MJX."""

    def __init__(self, env):
        import mujoco

        self._env = env
        m = env.brax_env.sys.mj_model
        d = mujoco.MjData(m)
        mujoco.mj_kinematics(m, d)
        self._pose = _Pose(jnp.asarray(d.geom_xpos, jnp.float32),
                           jnp.asarray(d.geom_xmat.reshape(-1, 3, 3), jnp.float32))
        self._obs = jnp.zeros(env.observation_space(env.default_params).shape, jnp.float32)

    def __getattr__(self, name):
        return getattr(self._env, name)

    def reset_env(self, key, params):
        return self._obs, _Still(_Inner(self._pose), jnp.zeros((), jnp.int32))

    def step_env(self, key, state, action, params):
        return (self._obs, state.replace(time=state.time + 1), jnp.zeros(()),
                jnp.zeros((), bool), {})

    def is_truncated(self, state, params):
        return jnp.zeros((), bool)


@pytest.fixture(scope="module")
def brax_videos(tmp_path_factory):
    """{task: (its video's entry, its directory)} of the brax tasks of `VIDEOS`, 3 steps
    each: the first through MJX, the others through `_Kinematics`."""
    pytest.importorskip("brax")
    root = tmp_path_factory.mktemp("brax")
    return {t: (_video(t, str(root / t), 3, still=i > 0), root / t)
            for i, t in enumerate(VIDEOS)}


def _check_video(v: dict, out, steps: int) -> None:
    n = max(v["central_steps"], v["teacher_steps"])
    assert 1 < n <= steps and v["file"] == "video_0.gif"
    _check_gif(str(out / "video_0.gif"), n)


@pytest.mark.parametrize("task", GYMNAX)
def test_gymnax_task_writes_a_multi_frame_gif(task, tmp_path):
    _check_video(_video(task, str(tmp_path), 12), tmp_path, 12)


@pytest.mark.parametrize("task", VIDEOS)
def test_brax_task_writes_a_multi_frame_gif(task, brax_videos):
    _check_video(*brax_videos[task], 3)


def test_recorded_returns_are_the_evaluators():
    model, pol = _fresh("cartpole", partitions=2)
    contexts = render.video_contexts(model.env.space, pol.partition,
                                     evaluation.grid_contexts(model.env.space, 64)[0], 3)
    key = jax.random.PRNGKey(3)
    # sampled actions: the keys matter, so the same returns mean the same keys
    rec = render.record(model, pol, contexts, key, greedy=False)
    assert sorted(set(rec.teacher.tolist())) == [0, 1]  # own teachers of both cells act
    own = teacher_policy(model, pol, own_cell(model, pol.partition), False)
    for who, policy in enumerate((central_policy(model, pol, False), own)):
        want = episode_returns(policy, model.env, jnp.asarray(contexts), key)
        np.testing.assert_array_equal(rec.returns[who], np.asarray(want))
    # cartpole pays 1 per step: each return is its episode's recorded length
    np.testing.assert_array_equal(rec.returns, rec.lengths)
    # the estimate `evaluate --video` checks: the recording on device and host, one video
    recorded = sum(x.nbytes for x in jax.tree.leaves((rec.frames, rec.alive)))
    assert render.recording_bytes(model.env, 3) == 2 * recorded + render.MAX_FRAMES * 560 * 560


def test_video_contexts_take_each_cell_in_turn():
    space = envs.make_task("pointgoal").space
    part = make_partition(jax.random.PRNGKey(0), space, "kmeans", 3, 200)
    grid = evaluation.grid_contexts(space, 64)[0]
    cells = lambda c: np.asarray(render.assign(part, space, jnp.asarray(c)))  # noqa: E731
    assert sorted(cells(render.video_contexts(space, part, grid, 3))) == [0, 1, 2]
    six = render.video_contexts(space, part, grid, 6)
    assert six.shape == (6, 1) and len(np.unique(six)) == 6
    assert sorted(cells(six)) == [0, 0, 1, 1, 2, 2]


def test_frame_steps_cap_the_frames_and_keep_the_last_step():
    assert render.frame_steps([5, 3]) == [0, 1, 2, 3, 4]
    assert render.frame_steps([1, 1]) == [0]
    assert render.frame_steps([1000, 20], max_frames=200) == list(range(0, 999, 6)) + [999]


def test_evaluate_cli_writes_videos(tmp_path, capsys):
    d = str(tmp_path / "run")
    config = Config(task="pointgoal", partitions=2, hidden_sizes=(8,), num_envs=2,
                    num_steps=4, update_epochs=1, num_minibatches=1, kmeans_samples=200,
                    total_steps=2 * 4 * 2, eval_contexts=2, checkpoint_dir=d)
    # a fresh state saved as the run's checkpoint at iteration 2: what is tested is the
    # recording and the drawing, not the policies (training would compile a program more)
    model = build_model(config)
    state = init_state(model, jax.random.PRNGKey(config.seed))
    with checkpoint.Saver(d, 1) as saver:
        saver.save(state.replace(iteration=jnp.asarray(2, jnp.int32)), config, 1)
    out = str(tmp_path / "eval")
    argv = [d, "--out", out, "--contexts", "8", "--resolution", "2"]
    assert evaluate.main(argv + ["--video", "0"]) == 2
    assert "--video = 0 is invalid" in capsys.readouterr().err
    assert evaluate.main(argv + ["--video", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith(f"and 2 GIFs in videos/ to {out}")
    assert sorted(os.listdir(os.path.join(out, "videos"))) == ["video_0.gif", "video_1.gif"]
    rep = json.load(open(os.path.join(out, "eval.json")))
    assert [v["teacher"] for v in rep["videos"]] in ([0, 1], [1, 0])  # one per partition
    assert "videos/video_1.gif" in rep["files"]
    for v in rep["videos"]:
        _check_gif(os.path.join(out, "videos", v["file"]),
                   max(v["central_steps"], v["teacher_steps"]))
