"""Checkpoints: full-state round trip, bit-exact resume (after a clean stop and after
`kill -9`), plain-orbax reading, and a clear error that changes nothing for each bad resume.
Integrity: flipped bytes in the array chunks orbax does not checksum are refused by resume,
evaluation and `load_policy`; a damaged checkpoint or a failed save prints one error line.

One small run (8 iterations of 8 envs x 16 steps, a report every 2, a checkpoint every 4) is
trained once per module and is the reference "uninterrupted run". A persistent compilation
cache shared with the subprocesses keeps the repeated compiles of the same programs cheap.
"""

import concurrent.futures
import glob
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import jax
import numpy as np
import pytest

from distillax import checkpoint
from distillax.checkpoint import CheckpointError
from distillax.cli import main
from distillax.config import Config
from distillax.run import resume, train

# A failed tensorstore read leaves orbax's event-loop callbacks to fail after the loop has
# closed ("Event loop is closed"); harmless, and raised outside the code under test.
pytestmark = [pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
              pytest.mark.usefixtures("compile_cache")]  # tests/conftest.py

CFG = Config(num_envs=8, num_steps=16, hidden_sizes=(16,), kmeans_samples=1000,
             total_steps=8 * 16 * 8, log_every=2, checkpoint_every=4, eval_every=4,
             eval_contexts=8, tensorboard=True)


def _env(cache: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)  # the session's XLA_FLAGS (tests/conftest.py), and extra ones
    flags = " ".join(f for f in (env.get("XLA_FLAGS", ""), extra.pop("XLA_FLAGS", "")) if f)
    env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", XLA_FLAGS=flags, **extra)
    return env


def _quiet(_: str) -> None:
    pass


def _leaves_equal(a, b) -> list[str]:
    """Key paths of the leaves where a and b differ (bitwise); [] when identical."""
    la, ta = jax.tree_util.tree_flatten_with_path(a)
    lb, tb = jax.tree_util.tree_flatten_with_path(b)
    assert ta == tb, "different tree structures"
    return [jax.tree_util.keystr(p) for (p, x), (_, y) in zip(la, lb)
            if not np.array_equal(np.asarray(x), np.asarray(y))]


def _records(directory) -> list[dict]:
    """metrics.jsonl without its wall-clock field."""
    out = []
    for line in open(os.path.join(directory, "metrics.jsonl")):
        r = json.loads(line)
        r.pop("steps_per_s")
        out.append(r)
    return out


def _snapshot(directory) -> dict[str, tuple[str, int]]:
    """Every file under `directory`: its content hash and modification time."""
    snap = {}
    for root, _, files in os.walk(directory):
        for f in files:
            p = os.path.join(root, f)
            snap[os.path.relpath(p, directory)] = (
                hashlib.sha256(open(p, "rb").read()).hexdigest(), os.stat(p).st_mtime_ns)
    return snap


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The uninterrupted reference run: (final state, summary, directory)."""
    d = str(tmp_path_factory.mktemp("full"))
    state, summary = train(CFG.replace(checkpoint_dir=d), log=_quiet)
    return jax.tree.map(np.asarray, state), summary, d


def test_checkpoints_at_the_cadence_and_the_end(full):
    state, summary, d = full
    assert checkpoint.steps(d) == (4, 8)  # every checkpoint_every = 4 iterations; 8 is the end
    info = checkpoint.read_run(d)
    assert info.step == 8 and info.config == CFG.replace(checkpoint_dir=d)
    assert info.meta["format_version"] == checkpoint.FORMAT_VERSION
    assert info.meta["env_steps"] == 8 * CFG.steps_per_iteration
    assert summary.checkpoints == 2 and summary.checkpoint_blocking_s > 0
    events = os.listdir(os.path.join(d, "tensorboard"))  # asked for by `tensorboard=True`
    assert len(events) == 1 and events[0].startswith("events.out.tfevents.")


def test_max_to_keep_drops_the_oldest(tmp_path):
    state, _ = train(CFG.replace(checkpoint_dir=str(tmp_path), checkpoint_every=2,
                                 max_to_keep=2), log=_quiet)
    assert checkpoint.steps(str(tmp_path)) == (6, 8)


def test_round_trip_restores_every_leaf_of_the_full_state(full):
    state, _, d = full
    like = jax.tree.map(lambda x: jax.numpy.zeros_like(x), state)  # structure only
    restored = checkpoint.restore_train_state(checkpoint.read_run(d), like)
    assert type(restored) is type(like)
    assert _leaves_equal(restored, state) == []
    # Every part a run needs is there, not only the parameters.
    for field in ("params", "opt", "teacher_stats", "central_stats", "env", "partition", "key",
                  "iteration"):
        assert jax.tree.leaves(getattr(restored, field)), field
    assert int(restored.iteration) == 8


def test_resume_after_a_stop_equals_the_uninterrupted_run(full, tmp_path):
    state, summary, d_full = full
    d = str(tmp_path)
    half, s_half = train(CFG.replace(checkpoint_dir=d), log=_quiet, stop_after=4)
    assert int(half.iteration) == 4 and s_half.final == {}
    assert checkpoint.steps(d) == (4,)
    resumed, s_res = resume(d, log=_quiet)
    assert s_res.start_iteration == 4
    assert _leaves_equal(resumed, state) == []  # bit for bit
    assert _records(d) == _records(d_full)
    assert s_res.final["central_greedy"] == summary.final["central_greedy"]
    assert checkpoint.steps(d) == (4, 8)
    assert len(os.listdir(os.path.join(d, "tensorboard"))) == 2  # one event file per process


def test_sigkill_between_checkpoints_loses_only_the_iterations_since_the_last(
        full, tmp_path, compile_cache):
    state, _, d_full = full
    d = str(tmp_path / "run")
    marker = str(tmp_path / "reached")
    # The child trains the reference config; once it has reported iteration 6 (checkpoint at 4,
    # the next due at 8) it signals and blocks, and is killed there with SIGKILL.
    script = textwrap.dedent(f"""
        import json, time
        from distillax.config import Config
        from distillax.run import train
        def log(line):
            if line.startswith("iter") and int(line.split()[1].split("/")[0]) >= 6:
                open({marker!r}, "w").close()
                time.sleep(600)
        config = Config.from_dict(json.loads({CFG.to_json()!r})).replace(checkpoint_dir={d!r})
        train(config, log=log)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], env=_env(compile_cache),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (os.path.exists(marker) and 4 in checkpoint.steps(d)):
            assert child.poll() is None, child.communicate()[1][-3000:]
            assert time.time() < deadline, "the child did not reach iteration 6"
            time.sleep(0.2)
        time.sleep(0.5)  # let the async save of step 4 finish its commit, if it has not
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert checkpoint.steps(d) == (4,)
    assert [r["iteration"] for r in _records(d)] == [2, 4, 6]  # 6 was logged, not saved

    resumed, summary = resume(d, log=_quiet)
    assert summary.start_iteration == 4  # iterations 5-6 were lost and recomputed
    assert _leaves_equal(resumed, state) == []
    assert _records(d) == _records(d_full)  # the killed run's record 6 is replaced, not doubled


def test_checkpoint_reads_with_the_plain_orbax_calls_in_the_docstring(full, monkeypatch):
    state, _, d = full
    monkeypatch.chdir(os.path.dirname(d))  # a relative DIR, as users type it
    # Run the snippet exactly as documented in distillax.checkpoint (and in the README).
    doc = checkpoint.__doc__
    start = doc.index("    import jax, orbax.checkpoint as ocp")
    snippet = textwrap.dedent(doc[start:doc.index("\n\n", start)])
    scope = {"DIR": os.path.basename(d)}
    exec(snippet, scope)
    assert _leaves_equal(scope["state"]["params"]["central"], state.params.central) == []
    assert _leaves_equal(scope["state"]["env"]["obs"], state.env.obs) == []
    assert int(scope["state"]["iteration"]) == 8
    assert scope["config"]["hidden_sizes"] == [16]
    assert scope["meta"]["format_version"] == checkpoint.FORMAT_VERSION


# --- errors: each names what is wrong, and the directory is left exactly as it was ---------


@pytest.fixture
def copy(full, tmp_path):
    """A private copy of the reference run directory, and its snapshot before the test."""
    d = str(tmp_path / "copy")
    shutil.copytree(full[2], d)
    return d


def _fails(d, match, **kw):
    before = _snapshot(d)
    with pytest.raises(CheckpointError, match=match):
        resume(d, log=_quiet, **kw)
    assert _snapshot(d) == before


def test_incompatible_config_lists_every_differing_field(copy):
    before = _snapshot(copy)
    with pytest.raises(CheckpointError) as err:
        resume(copy, log=_quiet, hidden_sizes=(32,), seed=3, learning_rate=1e-4,
               total_steps=CFG.total_steps * 2, log_every=4)
    msg = str(err.value)
    assert "hidden_sizes: checkpoint (16,), given (32,)" in msg
    assert "seed: checkpoint 0, given 3" in msg
    assert "learning_rate: checkpoint 0.0025, given 0.0001" in msg
    assert "total_steps:" not in msg and "log_every:" not in msg  # these may change
    assert _snapshot(copy) == before


def test_cli_resume_with_incompatible_flag_exits_2_with_the_field(copy, capsys):
    before = _snapshot(copy)
    assert main(["--resume", copy, "--num-envs", "16"]) == 2
    err = capsys.readouterr().err
    assert "num_envs: checkpoint 8, given 16" in err and "Traceback" not in err
    assert _snapshot(copy) == before


def test_missing_directory_or_no_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resume(str(tmp_path / "nope"), log=_quiet)
    (tmp_path / "empty").mkdir()
    _fails(str(tmp_path / "empty"), "no checkpoint in")


def test_unknown_step_names_the_steps_there(copy):
    _fails(copy, r"no checkpoint step 5 .*steps: \[4, 8\]", step=5)


def test_corrupt_arrays(copy):
    data = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(copy, "8", "state"))
            for f in fs if os.sep + "d" + os.sep in os.path.join(r, f) + os.sep
            and re.fullmatch(r"[0-9a-f]{32}", f)]
    assert data
    for p in data:
        b = bytearray(open(p, "rb").read())
        b[::7] = bytes(x ^ 0xFF for x in b[::7])
        open(p, "wb").write(bytes(b))
    _fails(copy, r"checkpoint .*8 could not be restored .*other checkpoints: steps \[4\]")


def test_corrupt_metadata(copy):
    with open(os.path.join(copy, "8", "meta", "metadata"), "w") as f:
        f.write("{not json")
    _fails(copy, r"checkpoint .*8 is unreadable \(config or meta item\)")


def test_format_version_mismatch(copy):
    path = os.path.join(copy, "8", "meta", "metadata")
    meta = json.load(open(path))
    meta["format_version"] = 999
    json.dump(meta, open(path, "w"))
    _fails(copy, "has format_version 999; this distillax reads format_version 1")


def test_total_steps_before_the_checkpoint(copy):
    _fails(copy, "past total_steps", total_steps=CFG.steps_per_iteration * 2)


def test_fresh_run_refuses_a_directory_with_checkpoints(copy):
    before = _snapshot(copy)
    with pytest.raises(CheckpointError, match="already holds checkpoints .*--resume"):
        train(CFG.replace(checkpoint_dir=copy), log=_quiet)
    assert _snapshot(copy) == before


def test_resume_into_another_directory_is_refused(copy, tmp_path):
    _fails(copy, "writes into its own directory", checkpoint_dir=str(tmp_path / "other"))


# --- hardening: bad files, half-written saves, SIGTERM, non-finite values ------------------


@pytest.mark.parametrize("damage", ["truncate arrays", "no state item", "foreign directory"])
def test_damaged_checkpoint_is_reported_not_loaded(copy, damage):
    step = os.path.join(copy, "8")
    if damage == "truncate arrays":  # a copy or a disk that stopped half-way
        for root, _, files in os.walk(os.path.join(step, "state")):
            for f in files:
                p = os.path.join(root, f)
                os.truncate(p, os.path.getsize(p) // 2)
        match = r"checkpoint .*8 could not be restored .*other checkpoints: steps \[4\]"
    elif damage == "no state item":
        shutil.rmtree(os.path.join(step, "state"))
        match = r"checkpoint .*8 could not be restored"
    else:  # a directory that merely looks like a step
        shutil.rmtree(step)
        os.makedirs(step)
        open(os.path.join(step, "notes.txt"), "w").write("not a checkpoint")
        match = r"checkpoint .*8 is unreadable \(config or meta item\)"
    _fails(copy, match)
    if damage != "foreign directory":
        with pytest.raises(CheckpointError, match=match.split(" .*other")[0]):
            checkpoint.restore_policies(copy)  # what evaluation reads


def test_half_written_checkpoint_is_never_the_latest(full, copy):
    state, _, _ = full
    # A save interrupted before its commit leaves orbax's tmp directory behind, never `8`.
    os.rename(os.path.join(copy, "8"), os.path.join(copy, "8.orbax-checkpoint-tmp-1700000000"))
    assert checkpoint.steps(copy) == (4,)
    assert checkpoint.read_run(copy).step == 4
    resumed, summary = resume(copy, log=_quiet)  # from 4, as if the save of 8 never happened
    assert summary.start_iteration == 4
    assert _leaves_equal(resumed, state) == []
    assert checkpoint.steps(copy) == (4, 8)
    assert not [n for n in os.listdir(copy) if "tmp" in n]  # the leftover was cleaned up


def test_sigterm_to_the_cli_leaves_a_restorable_checkpoint(tmp_path, compile_cache):
    d = str(tmp_path / "run")
    args = ["--num-envs", "8", "--num-steps", "16", "--hidden-sizes", "16", "--kmeans-samples",
            "1000", "--total-steps", str(8 * 16 * 40), "--log-every", "2", "--checkpoint-every",
            "100", "--eval-every", "100", "--eval-contexts", "8", "--checkpoint-dir", d]
    child = subprocess.Popen([sys.executable, "-m", "distillax.train", *args],
                             env=_env(compile_cache, PYTHONUNBUFFERED="1"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:  # wait until it trains (no checkpoint is due before 100)
            if line.startswith("iter"):
                break
        else:
            pytest.fail(f"the CLI ended before training: {child.stderr.read()[-3000:]}")
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=240)
    finally:
        child.kill()
    assert child.returncode == 0, err[-3000:]
    assert "SIGTERM: stopping after the running iterations" in out
    stopped = int(re.search(r"stopped at iteration (\d+) of 40", out).group(1))
    assert "--resume" in out and "Traceback" not in err
    assert checkpoint.steps(d) == (stopped,)  # saved at the stop, not at the cadence
    info, policies = checkpoint.restore_policies(d)
    assert info.step == stopped and jax.tree.leaves(policies.central)
    state, summary = resume(d, log=_quiet, stop_after=stopped + 2)
    assert summary.start_iteration == stopped and int(state.iteration) == stopped + 2


# A task whose reward turns NaN at a known env step: its episodes never end, so every env's
# step counter runs on across iterations and passes POISON_AT in iteration 6 (16 steps each).
POISON_AT = 5 * 16


def _poisoned_task():
    import jax.numpy as jnp
    from flax import struct
    from gymnax.environments import environment, spaces

    from distillax.contexts import ContextSpace
    from distillax.envs import ContextualEnv

    @struct.dataclass
    class State(environment.EnvState):
        x: jax.Array
        time: int

    @struct.dataclass
    class Params(environment.EnvParams):
        scale: float = 1.0
        max_steps_in_episode: int = 200  # past the poison (evaluation plays whole episodes)

    class Drift(environment.Environment):
        """Push x left or right (by the context's scale); reward -|x|, NaN from POISON_AT."""

        @property
        def default_params(self):
            return Params()

        def step_env(self, key, state, action, params):
            x = state.x + 0.1 * params.scale * (2.0 * action - 1.0)
            state = State(x=x, time=state.time + 1)
            reward = jnp.where(state.time > POISON_AT, jnp.nan, -jnp.abs(x))
            return self.get_obs(state), state, reward, jnp.array(False), {}

        def reset_env(self, key, params):
            state = State(x=jnp.zeros(()), time=0)
            return self.get_obs(state), state

        def get_obs(self, state, params=None, key=None):
            return jnp.stack([state.x, state.time / 100.0])

        def is_terminated(self, state, params):
            return jnp.array(False)

        def action_space(self, params=None):
            return spaces.Discrete(2)

        def observation_space(self, params):
            return spaces.Box(-jnp.inf, jnp.inf, (2,), jnp.float32)

    space = ContextSpace(names=("scale",), low=(0.5,), high=(1.5,))
    return ContextualEnv("poisoned", Drift(), space, lambda c: Params(scale=c[0]),
                         default_context=(1.0,))


def test_nan_reward_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    from distillax.envs import register
    from distillax.trainer import NumericalError

    register("poisoned", _poisoned_task)
    d = str(tmp_path)
    config = CFG.replace(task="poisoned", checkpoint_dir=d, checkpoint_every=2,
                         total_steps=8 * 16 * 10)
    lines = []
    with pytest.raises(NumericalError) as err:
        train(config, log=lines.append)
    msg = str(err.value)
    assert msg.startswith("training stopped: non-finite values at iteration 6 in: reward "
                          "(the environment's reward)"), msg
    assert f"the last good checkpoint, {os.path.join(d, '4')} (iteration 4), is untouched" in msg
    assert checkpoint.steps(d) == (2, 4)  # the faulty state (iteration 6) was never saved
    assert [r["iteration"] for r in _records(d)] == [2, 4]  # nor recorded
    before = _snapshot(d)
    info, policies = checkpoint.restore_policies(d)
    assert info.step == 4
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(policies))
    # Resume restores it and, being exact, meets the same fault at the same iteration.
    with pytest.raises(NumericalError, match="at iteration 6 in: reward"):
        resume(d, log=_quiet)
    assert checkpoint.steps(d) == (2, 4)
    assert {k: v for k, v in _snapshot(d).items() if k.startswith(("2/", "4/"))} == \
        {k: v for k, v in before.items() if k.startswith(("2/", "4/"))}


def test_huge_learning_rate_exits_3_naming_the_term(tmp_path, compile_cache):
    out = subprocess.run(
        [sys.executable, "-m", "distillax.train", "--num-envs", "8", "--num-steps", "16",
         "--hidden-sizes", "16", "--kmeans-samples", "1000", "--total-steps", "1024",
         "--log-every", "2", "--eval-contexts", "8", "--learning-rate", "1e30",
         "--checkpoint-dir", str(tmp_path)], capture_output=True, text=True, timeout=300,
        env=_env(compile_cache))
    assert out.returncode == 3, out.stderr[-3000:]
    assert re.search(r"error: training stopped: non-finite values at iteration \d+ in: .*"
                     r"(params|grad|value|clip)", out.stderr), out.stderr
    assert "no checkpoint was saved" in out.stderr and "Traceback" not in out.stderr
    assert checkpoint.steps(str(tmp_path)) == ()


# --- integrity: digests at save, checked at every restore; quiet failures -------------------


INLINE_BYTES = 1024  # orbax's OCDBT `max_inline_value_bytes`: larger chunks go to data files


def _chunks_outside_the_tree(state_dir: str) -> dict[str, tuple[str, int, int]]:
    """`{array name: (data file, offset, length)}` of every array chunk that OCDBT keeps in a data
    file rather than inline in its (CRC-checked) b-tree: the bytes a failing disk can change
    without tensorstore noticing. Found by reading each chunk through tensorstore's OCDBT
    kvstore and locating those exact bytes in the process data files."""
    import tensorstore as ts

    kv = ts.KvStore.open({"driver": "ocdbt",
                          "base": f"file://{os.path.abspath(state_dir)}/"}).result()
    files = {p: open(p, "rb").read()
             for p in glob.glob(os.path.join(state_dir, "ocdbt.process_*", "d", "*"))}
    found = {}
    for key in (k.decode() for k in kv.list().result()):
        if key.endswith((".zarray", ".zattrs")):
            continue
        value = kv.read(key).result().value
        if len(value) <= INLINE_BYTES:  # kept in the b-tree (a copy may linger in a data file)
            continue
        for p, data in files.items():
            if value in data:
                found[key.split("/")[0]] = (p, data.index(value), len(value))
    return found


def _flip_array_chunks(step_dir: str) -> list[str]:
    """Flip one bit in the middle of every chunk stored outside the b-tree (same file sizes, as
    a failing disk or a bad copy does); returns the names of the arrays hit."""
    chunks = _chunks_outside_the_tree(os.path.join(step_dir, "state"))
    for p, offset, length in chunks.values():
        with open(p, "r+b") as f:
            f.seek(offset + length // 2)
            byte = f.read(1)
            f.seek(offset + length // 2)
            f.write(bytes([byte[0] ^ 0x10]))
    return sorted(chunks)


def test_meta_holds_the_sha256_of_every_array_and_of_the_config(full):
    state, _, d = full
    meta = checkpoint.read_run(d).meta
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    assert meta["digest"] == "sha256" and len(meta["digests"]) == len(flat) > 60
    # The documented check by hand: sha256 of the array's C-order bytes, keyed as orbax names it.
    for path, x in flat:
        name = checkpoint.leaf_name(path)
        assert meta["digests"][name] == hashlib.sha256(
            np.ascontiguousarray(x).tobytes()).hexdigest(), name
    assert "params.central.params.pi.Dense_0.kernel" in meta["digests"]
    assert "opt.teacher.0.mu.params.actor.pi.Dense_0.kernel" in meta["digests"]
    raw = json.load(open(os.path.join(d, "8", "config", "metadata")))
    assert meta["config_sha256"] == hashlib.sha256(
        json.dumps(raw, sort_keys=True).encode()).hexdigest()


def test_flipped_bytes_in_array_chunks_pass_orbax_but_are_refused(full, copy, monkeypatch):
    state, _, _ = full
    hit = _flip_array_chunks(os.path.join(copy, "8"))
    # In this run: the 1 KiB optimizer kernels (incompressible) and the partition's pool.
    assert "partition.pool" in hit and "opt.teacher.0.mu.params.actor.pi.Dense_0.kernel" in hit
    # Without the digest check the damage goes through orbax and tensorstore unnoticed ...
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "verify", lambda *a, **k: None)
        _, unchecked = checkpoint.restore_policies(copy)
    assert not np.array_equal(unchecked.partition.pool, state.partition.pool)
    # ... with it, resume, evaluation's restore and load_policy refuse, naming step and arrays.
    arrays = len(jax.tree.leaves(state))
    named = rf"checkpoint .*8 \(step 8\) is corrupt: {len(hit)} of {arrays} arrays differ from " \
            rf"their sha256 digest taken at save \({re.escape(hit[0])}, "
    _fails(copy, named + r".*other checkpoints: steps \[4\]")
    read = len(jax.tree.leaves((state.params, state.teacher_stats, state.central_stats,
                                state.partition, state.hparams)))
    policy_arrays = (rf"checkpoint .*8 \(step 8\) is corrupt: 1 of {read} arrays "
                     r".*\(partition\.pool\)")
    with pytest.raises(CheckpointError, match=policy_arrays):
        checkpoint.restore_policies(copy)
    from distillax.checkpoint import load_policy
    with pytest.raises(CheckpointError, match=policy_arrays):
        load_policy(copy)


def test_changed_config_item_is_refused(copy):
    path = os.path.join(copy, "8", "config", "metadata")
    text = open(path).read()
    assert '"learning_rate": 0.0025' in text
    # Still valid JSON and a valid config: only the digest tells it from the one saved.
    open(path, "w").write(text.replace('"learning_rate": 0.0025', '"learning_rate": 0.0625'))
    _fails(copy, r"checkpoint .*8 \(step 8\) is corrupt: its config item differs")


def test_checkpoint_without_digests_restores_with_a_note(full, copy):
    state, _, _ = full
    path = os.path.join(copy, "8", "meta", "metadata")
    meta = json.load(open(path))
    for k in ("digest", "digests", "config_sha256"):  # as distillax wrote them before
        del meta[k]
    json.dump(meta, open(path, "w"))
    note = r"checkpoint .*8 has no digests \(saved before distillax stored them\)"
    with pytest.warns(checkpoint.UnverifiedCheckpointWarning, match=note):
        _, policies = checkpoint.restore_policies(copy)
    assert _leaves_equal(policies.central, state.params.central) == []
    like = jax.tree.map(lambda x: jax.numpy.zeros_like(x), state)
    with pytest.warns(checkpoint.UnverifiedCheckpointWarning, match=note):
        restored = checkpoint.restore_train_state(checkpoint.read_run(copy), like)
    assert _leaves_equal(restored, state) == []
    # What the command lines print: one line, once, however many restores read it.
    out = io.StringIO()
    with checkpoint.cli_notes(file=out):
        checkpoint.restore_policies(copy)
        checkpoint.restore_policies(copy)
    text = out.getvalue().splitlines()
    assert len(text) == 1 and re.match("note: " + note, text[0]), text


@pytest.mark.parametrize("cli, damage", [("evaluate", "flip"), ("evaluate", "truncate"),
                                         ("train", "truncate")])
def test_cli_on_a_damaged_checkpoint_prints_one_error_line(copy, compile_cache, cli, damage):
    step = os.path.join(copy, "8")
    if damage == "flip":
        hit = _flip_array_chunks(step)
        expected = r"error: checkpoint .*8 \(step 8\) is corrupt: .*partition\.pool"
    else:  # the b-tree file cut short: orbax fails mid-read with other reads in flight
        for p in glob.glob(os.path.join(step, "state", "d", "*")):
            os.truncate(p, os.path.getsize(p) // 2)
        hit = ["the b-tree"]
        expected = r"error: checkpoint .*8 could not be restored"
    assert hit
    args = ([copy, "--contexts", "4", "--resolution", "2"] if cli == "evaluate"
            else ["--resume", copy])
    out = subprocess.run([sys.executable, "-m", f"distillax.{cli}", *args], capture_output=True,
                         text=True, timeout=240, env=_env(compile_cache))
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr[-3000:]  # no tracebacks from orbax's threads, at exit
    assert re.match(expected, lines[0]), lines[0]


SAVER_SCRIPT = """
import os, shutil, sys, time
import jax.numpy as jnp
from flax import struct
from distillax import checkpoint
from distillax.config import Config

@struct.dataclass
class State:
    iteration: jnp.ndarray
    w: jnp.ndarray

# 16 MB: still being written in the background when the error comes.
state = State(jnp.asarray(3, jnp.int32), jnp.ones((1 << 22,), jnp.float32))
d = sys.argv[1]
try:
    with checkpoint.Saver(os.path.join(d, "a"), 2) as saver:
        saver.save(state, Config(), 1)
        raise RuntimeError("boom while the save is in flight")
except RuntimeError as e:
    print(f"error: {e}", file=sys.stderr)
print(checkpoint.steps(os.path.join(d, "a")))
b = os.path.join(d, "b")
try:
    with checkpoint.Saver(b, 2) as saver:
        saver.save(state, Config(), 1)
        deadline = time.time() + 120
        while checkpoint.steps(b) != (3,) and time.time() < deadline:
            time.sleep(0.05)  # until step 3 is committed
        shutil.rmtree(b)
        open(b, "w").close()  # the run directory deleted, a file in its place
        saver.save(state.replace(iteration=jnp.asarray(4, jnp.int32)), Config(), 1)
except checkpoint.CheckpointError as e:
    print(f"error: {e}", file=sys.stderr)
"""


def test_saver_errors_leave_one_line_and_a_committed_or_no_checkpoint(tmp_path, compile_cache):
    out = subprocess.run([sys.executable, "-c", SAVER_SCRIPT, str(tmp_path)],
                         capture_output=True, text=True, timeout=240, env=_env(compile_cache))
    assert out.returncode == 0, out.stderr[-3000:]
    # Leaving the `with` waits for the write in flight: no orbax thread dies at exit.
    assert out.stdout.splitlines() == ["(3,)"]
    lines = out.stderr.splitlines()
    assert len(lines) == 2, out.stderr[-3000:]
    assert lines[0] == "error: boom while the save is in flight"
    assert re.match(r"error: saving a checkpoint \(step 4\) into .*b' failed: it is no "
                    r"longer a directory", lines[1]), lines[1]


# --- multi-process saves: one verdict for every process (checkpoint.agree, _Processes) ---------


def test_agree_gives_every_process_the_first_failure_in_process_order():
    def two(other):  # process 0's view of a two-process gather; `other` is process 1's text
        return lambda mine: [mine, other]

    assert checkpoint.agree(False, None, two("done")) == (False, None)
    assert checkpoint.agree(False, None, two("running")) == (True, None)  # wait for 1
    # 1's write failed while 0's still waits for it (at orbax's barrier): 0 stops as well
    assert checkpoint.agree(True, None, two("failed:disk full on 1")) == (True, "disk full on 1")
    assert checkpoint.agree(False, "on 0", two("failed:on 1")) == (False, "on 0")
    assert checkpoint.agree(False, "alone", lambda mine: [mine]) == (False, "alone")


class _KeyValueStore:
    """The part of jax.distributed's client that `_Processes` uses, in memory, shared by the
    threads that stand for the processes."""

    def __init__(self):
        self.data, self.cv = {}, threading.Condition()

    def key_value_set(self, key, value):
        with self.cv:
            assert key not in self.data, key  # the service refuses to overwrite
            self.data[key] = value
            self.cv.notify_all()

    def blocking_key_value_get(self, key, timeout_ms):
        with self.cv:
            assert self.cv.wait_for(lambda: key in self.data, timeout_ms / 1000), key
            return self.data[key]

    def key_value_dir_get(self, prefix):
        with self.cv:
            return [(k, v) for k, v in self.data.items() if k.startswith(prefix)]

    def key_value_delete(self, key):
        with self.cv:
            del self.data[key]


def test_processes_gather_alike_and_an_abort_ends_a_barrier_waiting_for_a_failed_one():
    store = _KeyValueStore()
    procs = [checkpoint._Processes("t", store, index=i, count=2) for i in range(2)]

    def together(fn):  # run fn(process) in two threads at once: [result of 0, result of 1]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            return [f.result(timeout=30) for f in [pool.submit(fn, p) for p in procs]]

    # each process's (still writing, failure) -> the verdict both get
    for states, verdict in ((((True, None), (False, None)), (True, None)),
                            (((False, None), (False, "full")), (False, "full")),
                            (((False, None), (False, None)), (False, None))):
        got = together(lambda p, s=states: checkpoint.agree(*s[p.index], p.gather))
        assert got == [verdict] * 2
    # round 1 went in round 3: a process in round 3 knows every one has read round 1
    assert sorted(k for k in store.data if "/gather/" in k) == [
        "t/gather/2/0", "t/gather/2/1", "t/gather/3/0", "t/gather/3/1"]
    for _ in range(2):  # orbax reuses a barrier's key on every save
        together(lambda p: p.barrier(key="write", timeout_ms=30_000))
    assert procs[0]._uses["write"] == procs[1]._uses["write"] == 2

    # process 1's write failed: it never reaches the barrier, where process 0 waits
    threading.Timer(0.2, procs[0].aborted.set).start()
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match="barrier 'write' abandoned: a save failed"):
        procs[0].barrier(key="write", timeout_ms=30_000)
    assert 0.2 <= time.perf_counter() - t < 5
    with pytest.raises(TimeoutError, match="not every process arrived"):
        procs[1].barrier(key="commit", timeout_ms=50)  # (never aborted: orbax's timeout)


@pytest.mark.parametrize("anneal_lr", [True, False])
def test_a_config_saved_before_anneal_central_lr_reads_back_with_anneal_lr(copy, anneal_lr):
    """Before the central policy's schedule had its own field it followed `anneal_lr`: a
    checkpoint of that time resumes with the schedule it was trained with."""
    config_path = os.path.join(copy, "8", "config", "metadata")
    raw = json.load(open(config_path))
    del raw["anneal_central_lr"]
    raw["anneal_lr"] = anneal_lr
    json.dump(raw, open(config_path, "w"))
    meta_path = os.path.join(copy, "8", "meta", "metadata")
    meta = json.load(open(meta_path))
    meta["config_sha256"] = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    json.dump(meta, open(meta_path, "w"))
    assert checkpoint.read_run(copy).config.anneal_central_lr is anneal_lr


def test_orbax_error_logs_go_to_the_open_savers_and_stay_dropped_after_close(tmp_path):
    """An orbax ERROR record (a failed background write) becomes each open Saver's `failure`
    and is not printed; after every Saver closed (a failed one's abandoned threads can log
    later) it is still dropped, and a later Saver still receives the next one. Other ERROR
    records pass."""
    import logging

    from distillax.checkpoint import Saver

    absl, seen = logging.getLogger("absl"), []
    handler = logging.Handler()
    handler.emit = seen.append
    absl.addHandler(handler)

    def log(path: str, exc: BaseException) -> None:
        absl.handle(absl.makeRecord("absl", logging.ERROR, path, 1, "write failed", (),
                                    (type(exc), exc, None)))

    orbax = f"{os.sep}site-packages{os.sep}orbax{os.sep}checkpoint{os.sep}x.py"
    try:
        with Saver(str(tmp_path / "a"), 1) as first:
            log(orbax, OSError("disk full"))
        assert str(first.failure) == "disk full" and seen == []
        log(orbax, OSError("late"))  # no Saver open: dropped all the same
        assert seen == []
        with Saver(str(tmp_path / "b"), 1) as second:
            log(orbax, OSError("again"))
        assert str(second.failure) == "again" and str(first.failure) == "disk full"
        log(f"{os.sep}elsewhere{os.sep}x.py", OSError("not orbax"))
        assert [r.getMessage() for r in seen] == ["write failed"]
    finally:
        absl.removeHandler(handler)
