"""Evaluation from a checkpoint: a run saved with 4 simulated devices restores on 1 (for
evaluation and for training), the evaluate CLI writes its table and PNGs in a fresh process,
and `load_policy` acts like the evaluated central policy.

The 4-device run is a subprocess (the device count is fixed when JAX starts); a persistent
compilation cache shared with the subprocesses keeps the repeated compiles cheap.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import distillax
from distillax import checkpoint
from distillax.checkpoint import load
from distillax.config import Config
from distillax.envs import make_task
from distillax.evaluation import (
    episode_returns,
    grid_contexts,
    grid_returns,
    slices_1d,
    slices_2d,
)
from distillax.model import build_model
from distillax.run import resume

pytestmark = pytest.mark.usefixtures("compile_cache")  # tests/conftest.py

# 4 partitions x 4 devices need 16 envs. The run is stopped at iteration 4 of 8 (a checkpoint
# every 2), so no process pays for the final held-out report's compilation.
CFG = Config(num_envs=16, num_steps=16, hidden_sizes=(16,), kmeans_samples=1000,
             total_steps=16 * 16 * 8, log_every=2, checkpoint_every=2, eval_every=100,
             eval_contexts=8)


def _env(cache: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)  # the session's XLA_FLAGS (tests/conftest.py), and extra ones
    flags = " ".join(f for f in (env.get("XLA_FLAGS", ""), extra.pop("XLA_FLAGS", "")) if f)
    env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", XLA_FLAGS=flags, **extra)
    return env


@pytest.fixture(scope="module")
def four(tmp_path_factory, compile_cache):
    """(run directory, the acting arrays as the 4-device process held them at the end)."""
    d = str(tmp_path_factory.mktemp("four") / "run")
    dump = d + ".npz"
    script = textwrap.dedent(f"""
        import json
        import jax, numpy as np
        from distillax.config import Config
        from distillax.run import train
        assert jax.device_count() == 4, jax.devices()
        config = Config.from_dict(json.loads({CFG.to_json()!r})).replace(checkpoint_dir={d!r})
        state, _ = train(config, log=lambda line: None, stop_after=4)
        acting = (state.params, state.teacher_stats, state.central_stats, state.partition)
        leaves = jax.tree_util.tree_flatten_with_path(acting)[0]
        np.savez({dump!r}, **{{jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}})
        print("devices", len(state.env.obs.sharding.device_set))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600, env=_env(compile_cache, XLA_FLAGS=(
                             "--xla_force_host_platform_device_count=4")))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "devices 4" in out.stdout  # the env carry really was split over 4 devices
    return d, dict(np.load(dump))


def test_four_device_checkpoint_restores_on_one_device_for_evaluation(four):
    d, saved = four
    assert jax.device_count() == 1
    info, pol = checkpoint.restore_policies(d)
    assert info.meta["devices"] == 4 and info.step == 4
    acting = ((pol.teacher, pol.central), pol.teacher_stats, pol.central_stats, pol.partition)
    got = {jax.tree_util.keystr(p): np.asarray(x)
           for p, x in jax.tree_util.tree_flatten_with_path(acting)[0]}
    # Same leaves in the same order (Params(teacher, central) vs the tuple above).
    assert len(got) == len(saved)
    for (k_got, v_got), (k_saved, v_saved) in zip(got.items(), saved.items()):
        assert np.array_equal(v_got, v_saved), (k_got, k_saved)
    assert all(x.sharding.device_set == {jax.devices()[0]} for x in jax.tree.leaves(pol))


def test_four_device_checkpoint_restores_on_one_device_for_training(four, tmp_path):
    d, saved = four
    copy = str(tmp_path / "run")
    shutil.copytree(d, copy)
    # Resumed where it stopped, the run has nothing to do: this is the restored state.
    state, _ = resume(copy, log=lambda line: None, stop_after=4)
    assert int(state.iteration) == 4
    acting = (state.params, state.teacher_stats, state.central_stats, state.partition)
    leaves = jax.tree.leaves(acting)
    assert len(leaves) == len(saved)
    for x, (k, v) in zip(leaves, saved.items()):
        assert np.array_equal(np.asarray(x), v), k
    obs_dim = build_model(CFG).env.obs_dim
    assert state.env.obs.shape == (4, 4, obs_dim)  # all 16 envs, on one device now
    assert state.env.obs.sharding.device_set == {jax.devices()[0]}
    # And training goes on from there on one device.
    resumed, summary = resume(copy, log=lambda line: None, stop_after=6)
    assert summary.start_iteration == 4 and int(resumed.iteration) == 6
    assert checkpoint.steps(copy) == (2, 4, 6)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(resumed.params))


def test_evaluate_cli_writes_the_table_and_the_plots(four, tmp_path, compile_cache):
    d, _ = four
    out_dir = str(tmp_path / "eval")
    out = subprocess.run([sys.executable, "-m", "distillax.evaluate", d, "--out", out_dir,
                          "--contexts", "250", "--resolution", "5"],
                         capture_output=True, text=True, timeout=600, env=_env(compile_cache))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "central mean return" in out.stdout
    files = set(os.listdir(out_dir))
    pngs = {"returns_length_masspole.png", "returns_length_gain_abs.png",
            "returns_masspole_gain_abs.png", "returns_1d.png", "learning_curves.png"}
    assert {"eval.json", "eval.md"} | pngs <= files
    from matplotlib.image import imread

    for name in pngs:
        img = imread(os.path.join(out_dir, name))
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, name
        assert img[..., :3].std() > 0.05, f"{name} is blank"

    rep = json.load(open(os.path.join(out_dir, "eval.json")))
    P, space = CFG.partitions, make_task("cartpole").space
    # The grid covers the whole space: every bound of every continuous dim, both signs.
    grid = np.asarray(rep["per_context"]["contexts"])
    assert rep["grid"]["shape"] == {"length": 5, "masspole": 5, "gain_abs": 5, "gain_sign": 2}
    assert len(grid) == 5 * 5 * 5 * 2 == rep["grid"]["contexts"]
    np.testing.assert_allclose(grid.min(0)[:3], space.low[:3], rtol=1e-6)
    np.testing.assert_allclose(grid.max(0)[:3], space.high[:3], rtol=1e-6)
    assert set(grid[:, 3]) == {-1.0, 1.0}
    # Tables agree with each other: the cross table's diagonal is each partition's own teacher.
    cross = rep["teacher_on_partition"]
    assert len(cross) == P and all(len(row) == P for row in cross)
    for j, p in enumerate(rep["per_partition"]):
        assert p["own_teacher"] == pytest.approx(cross[j][j])
        # the fit: a KL is >= 0; a discrete action gap is a rate of disagreement
        for states in ("teacher", "central"):
            assert p[f"kl_{states}_states"] >= 0
            assert 0 <= p[f"action_gap_{states}_states"] <= 1
    assert sum(p["contexts"] for p in rep["per_partition"]) == len(grid)
    own = np.asarray(rep["per_context"]["own_teacher"])
    assert rep["overall"]["teachers_own_cell"]["mean"] == pytest.approx(own.mean())
    assert ((own >= 0) & (own <= 500)).all()  # cartpole returns: 1 per step, at most 500
    md = open(os.path.join(out_dir, "eval.md")).read()
    for heading in ("## Return over the whole context space", "## Per partition",
                    "## Every teacher on every partition's contexts"):
        assert heading in md
    assert "| KL, teacher states | KL, central states |" in md
    assert md.count("\n| ") >= 3 + P + P  # a row per policy, per partition, per teacher


def test_evaluate_cli_missing_checkpoint_exits_2(tmp_path, compile_cache):
    out = subprocess.run([sys.executable, "-m", "distillax.evaluate", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=300, env=_env(compile_cache))
    assert out.returncode == 2
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_load_policy_acts_like_the_evaluated_central_policy(four):
    d, _ = four
    info, model, pol = load(d)
    obs_dim, space = model.env.obs_dim, model.env.space
    policy = distillax.load_policy(d, greedy=True)
    key = jax.random.PRNGKey(0)
    context = jnp.asarray(model.env.default_context)
    a = policy(np.zeros(obs_dim), context, key)  # one observation, no batch axis
    assert a.shape == () and int(a) in (0, 1)
    obs = jax.random.normal(key, (5, obs_dim))
    batch = policy(obs, jnp.broadcast_to(context, (5, space.dim)), key)
    assert batch.shape == (5,)
    # Greedy is the mode of the stored central network: independent of the key.
    assert np.array_equal(batch, policy(obs, jnp.broadcast_to(context, (5, space.dim)),
                                        jax.random.PRNGKey(9)))
    sampled = distillax.load_policy(d)(obs, jnp.broadcast_to(context, (5, space.dim)), key)
    assert sampled.shape == (5,) and set(np.asarray(sampled).tolist()) <= {0, 1}

    # Episodes with the exported policy return what the evaluator reports for the central.
    contexts, _ = grid_contexts(space, 16)
    r = grid_returns(model, pol, contexts, key, greedy=True)
    mine = episode_returns(policy, model.env, jnp.asarray(contexts), key)
    np.testing.assert_array_equal(np.asarray(mine), r["central"])
    # ... and the evaluator's "own teacher" column is the matching row of the teacher table.
    assert np.array_equal(r["own"], r["teachers"][r["cell"], np.arange(len(contexts))])


def test_load_policy_missing_checkpoint_names_the_directory(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint in"):
        distillax.load_policy(str(tmp_path))


def test_grid_and_slices_cover_the_space():
    space = make_task("cartpole").space
    grid, shape = grid_contexts(space, 512)
    assert shape == {"length": 6, "masspole": 6, "gain_abs": 6, "gain_sign": 2}
    assert grid.shape == (6 ** 3 * 2, 4) and len(np.unique(grid, axis=0)) == len(grid)
    s2 = slices_2d(space, 7)
    assert [(space.names[s.a], space.names[s.b]) for s in s2] == [
        ("length", "masspole"), ("length", "gain_abs"), ("masspole", "gain_abs")]
    s = s2[1]  # length (x) by gain_abs (y): masspole at mid-range, one row per sign
    assert s.contexts.shape == (2, 7, 7, 4)
    np.testing.assert_allclose(s.contexts[..., 1], (0.05 + 0.5) / 2)
    np.testing.assert_allclose(s.contexts[0, 3, :, 0], s.xs)
    np.testing.assert_allclose(s.contexts[0, :, 3, 2], s.ys)
    assert (s.contexts[0, ..., 3] == -1).all() and (s.contexts[1, ..., 3] == 1).all()
    lines = slices_1d(space, 9)
    assert [space.names[a] for a, _, _ in lines] == ["length", "masspole", "gain_abs"]
    a, xs, c = lines[0]
    assert c.shape == (2, 9, 4) and np.array_equal(c[1, :, 0], xs)
    assert set(c[:, :, 3].ravel()) == {-1.0, 1.0}
