"""The shipped goal tasks: `reacher-target` resets as brax's reacher given brax's target,
`ant-goal`'s reward is DnC's, ant-goal trains through the GPU script run small, and
reacher-target's training program lowers. (The adapter, and
`double-pendulum-physics`, which reproduces brax's inverted double pendulum: test_brax.py.)

A file of its own so that, under `pytest -n 2 --dist loadfile`, its MJX compilations run
beside test_brax.py's on the other worker.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

pytest.importorskip("brax")

from brax.envs.base import State as BraxInnerState
from brax.envs.reacher import Reacher
from test_brax import TINY, _check_trained

from distillax import parallel
from distillax.config import Config
from distillax.contexts import make_partition
from distillax.envs import ant_goal, reacher_target
from distillax.envs import mjx as dmjx
from distillax.model import build_model
from distillax.trainer import _fresh, make_runner

pytestmark = pytest.mark.usefixtures("compile_cache")  # tests/conftest.py


def _stub_pipeline(env):
    """`env` whose MJX calls are replaced by records of their arguments: its reset and
    step logic run eagerly in milliseconds, without compiling MJX."""
    from types import SimpleNamespace

    env.pipeline_init = lambda q, qd, *a: SimpleNamespace(q=q, qd=qd)
    env._get_obs = lambda ps: jnp.concatenate([ps.q, ps.qd])
    return env


def test_reacher_target_reset_draws_as_brax_given_brax_target():
    """reset_task with the target brax itself would draw (from the first third of the key)
    hands MJX the same q and qd as brax's reacher reset, and q[2:] (the target joints) is
    the context."""
    env = _stub_pipeline(reacher_target.ReacherTarget())
    ref = _stub_pipeline(Reacher(backend="mjx"))
    key = jax.random.PRNGKey(3)
    _, target = ref._random_target(jax.random.split(key, 3)[0])
    ours, theirs = env.reset_task(key, target), ref.reset(key)
    np.testing.assert_array_equal(ours.pipeline_state.q, theirs.pipeline_state.q)
    np.testing.assert_array_equal(ours.pipeline_state.qd, theirs.pipeline_state.qd)
    np.testing.assert_array_equal(ours.pipeline_state.q[2:], target)
    mine = env.reset_task(key, jnp.asarray([0.1, -0.05]))
    np.testing.assert_allclose(mine.pipeline_state.q[2:], [0.1, -0.05])
    np.testing.assert_array_equal(mine.pipeline_state.q[:2], theirs.pipeline_state.q[:2])


@struct.dataclass
class _FakeX:
    pos: jax.Array


@struct.dataclass
class _FakePipeline:
    """The three fields of an MJX pipeline state that AntGoal.step reads."""

    x: _FakeX
    q: jax.Array
    qd: jax.Array


def test_ant_reward_is_dnc_reward_of_the_clipped_action():
    """DnC's r = 1 - |xy - g| / 5 - 0.005 sum(a^2), the action clipped by the env, by hand.

    The MJX step is stubbed to put the torso at (1, 2, 0.5) (the ant's own physics is
    brax's, untouched): with goal angle pi/2, g = (0, 5), |xy - g| = sqrt(1 + 9) = 3.16228;
    a = 2 in all 8 joints is clipped to 1: cost 0.005 * 8 = 0.04, so
    r = 1 - 3.16228 / 5 - 0.04 = 0.327544 (unclipped it would be 1 - 0.632456 - 0.16).
    A torso at z = 0.1 < 0.2 terminates; a NaN state terminates with reward 0."""
    task = ant_goal.make()
    env = task.env.brax_env
    q = jnp.zeros(15).at[:3].set(jnp.asarray([1.0, 2.0, 0.5]))

    def fake(z=0.5, bad=False):
        pos = jnp.zeros((9, 3)).at[0].set(jnp.asarray([1.0, 2.0, z]))
        qq = q.at[2].set(jnp.nan if bad else z)
        return _FakePipeline(_FakeX(pos), qq, jnp.zeros(14))

    ctx = jnp.asarray([math.pi / 2])
    np.testing.assert_allclose(ant_goal.goal_of(ctx), [0.0, 5.0], atol=1e-6)
    params = task.to_params(ctx)
    inner = BraxInnerState(fake(), jnp.zeros(29), jnp.zeros(()), jnp.zeros(()),
                           {"distance": jnp.zeros(())}, {"goal": params.task})
    state = dmjx.MjxState(inner, jnp.zeros((), jnp.int32))
    for z, bad, reward, done in [(0.5, False, 1 - math.sqrt(10) / 5 - 0.04, False),
                                 (0.1, False, 1 - math.sqrt(10) / 5 - 0.04, True),
                                 (0.5, True, 0.0, True)]:
        # the stub pipeline state has 3 fields, not MJX Data's: no zero-size fields to
        # strip / fill either (instance attributes, deleted after)
        stub = fake(z, bad)
        env.pipeline_step = lambda ps, a, _f=stub: _f
        task.env._fill = task.env._strip = lambda inner: inner
        try:
            # the unjitted step (the jitted one would reuse its trace of the first stub)
            obs, nxt, r, term = task.env._step_impl(state, jnp.full((8,), 2.0), params.context)
        finally:
            del env.pipeline_step, task.env._fill, task.env._strip  # back to brax's own
        np.testing.assert_allclose(r, reward, rtol=1e-6)
        assert bool(term) == done
    # the observation is q and qd, never the goal
    np.testing.assert_array_equal(obs[:15], fake(0.5, True).q)
    assert obs.shape == (29,) and int(nxt.time) == 1


def test_reacher_target_training_program_lowers():
    """The training program of 2 reacher-target teachers (method central) traces and lowers
    on a 1-device mesh, returning the state it took: the task fits the trainer's shapes, its
    shard_map and MJX's loops (envs/brax.py's patches). Lowered, not compiled (an MJX
    compile is most of this file's time): training through the same adapter is checked by
    the ant-goal run below and test_brax.py's runs, and reacher's own part, the target its
    context sets at reset, by the reset test above."""
    cfg = Config(task="reacher-target", method="central", partitions=2, total_steps=4 * 8 * 3,
                 **TINY)
    model = build_model(cfg)
    # the fresh state's shapes only (building it would compile MJX's reset)
    partition = make_partition(jax.random.PRNGKey(0), model.env.space, cfg.partitioner,
                               cfg.partitions, cfg.kmeans_samples)
    state = jax.eval_shape(lambda k: _fresh(model, partition, k, k, k), jax.random.PRNGKey(0))
    runner = make_runner(model, state, parallel.make_mesh(1), 2)
    out_state, metrics = runner.step.lower(state, runner.count(2)).out_info
    assert jax.tree.structure(out_state) == jax.tree.structure(state)
    assert [x.shape for x in jax.tree.leaves(out_state)] == [
        x.shape for x in jax.tree.leaves(state)]
    assert metrics.update.loss.shape[0] == 2  # [iterations, ...]


def test_ant_goal_trains_through_the_gpu_script_run_small(tmp_path, monkeypatch):
    """benchmarks/gpu_ant_goal.py --small is the ant-goal smoke run (one MJX ant compile for
    both): two iterations of 2 teachers (method central) with finite losses, moved params and
    every env's goal 5 (cos, sin) of its context; and the script writes speeds and a learning
    curve."""
    import importlib.util
    import json
    import os

    from distillax import run

    trained, real = [], run.train

    def recording(config, **kw):  # the script's `train`, keeping its state for the checks
        trained.append((config, *real(config, **kw)))
        return trained[-1][1:]

    monkeypatch.setattr(run, "train", recording)
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "gpu_ant_goal.py")
    spec = importlib.util.spec_from_file_location("gpu_ant_goal", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    runs = script.main(["--small", "--out", str(tmp_path)])
    ((cfg, state, summary),) = trained
    assert (cfg.task, cfg.method, cfg.partitions) == ("ant-goal", "central", 2)
    _check_trained(cfg, state, summary)
    ctx = np.asarray(state.env.context)  # [P, B, d]
    goal = np.asarray(state.env.state.inner.info["goal"])
    np.testing.assert_allclose(goal, 5 * np.stack([np.cos(ctx[..., 0]),
                                                   np.sin(ctx[..., 0])], -1), atol=1e-5)
    saved = json.load(open(tmp_path / "gpu_ant_goal.json"))
    assert [(r["method"], r["partitions"]) for r in saved["runs"]] == [("central", 2)]
    r = runs[0]
    assert r["iterations"] == 2 and r["env_steps"] == 2 * 4 * 8 and r["steps_per_s"] > 0
    assert len(r["curve"]) == 1 and np.isfinite(r["curve"][0]["teacher_return"])
    assert (tmp_path / "gpu_ant_goal.md").read_text().count("| central | 2 |") == 1
