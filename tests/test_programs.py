"""The program store (`programs.py`): what its key sees, its sealed format, its cap and
eviction, and that a stored program is loaded whole, refused when it is not one this store
sealed, never made from an executable JAX's cache served, and compiled again when it loads
but cannot run. `test_cache_cli.py` runs the store through the command line."""

import dataclasses
import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import serialize_executable
from jax.experimental.compilation_cache import compilation_cache

from distillax import Config, envs, programs
from distillax.config import leaf_fields
from distillax.programs import HOST_ONLY, Store, load_or_compile, program_key, seal, unseal

ARGS = (jnp.zeros((3, 2)), jnp.int32(1))

# what a test stores depends on what it compiles from scratch, not on the runs an earlier
# test in this worker made (they turn JAX's cache on); `jax_cache` turns it on for its own
pytestmark = pytest.mark.usefixtures("jax_cache_off")


def test_the_key_changes_with_what_makes_the_program_and_not_with_the_run_files():
    base = program_key("p", Config(), ARGS)
    assert base == program_key("p", Config(), ARGS)
    assert len(base) == 64
    differs = [program_key("q", Config(), ARGS),  # another program
               program_key("p", Config(hidden_sizes=(32, 32)), ARGS),  # a static field
               program_key("p", Config(seed=1), ARGS),
               program_key("p", Config(sweep=(("gamma", (0.9, 0.99, 0.999)),)), ARGS),
               program_key("p", Config(), (jnp.zeros((3, 4)), jnp.int32(1))),  # a shape
               program_key("p", Config(), (jnp.zeros((3, 2), jnp.int32), jnp.int32(1))),
               program_key("p", Config(), (jnp.zeros((3, 2)),))]  # the arguments' structure
    assert base not in differs and len(set(differs)) == len(differs)
    # where files go and how often the host evaluates or saves: the same programs
    assert {"checkpoint_dir", "eval_every", "checkpoint_every"} <= set(HOST_ONLY)
    assert program_key("p", Config(checkpoint_dir="/tmp/x", eval_every=3, checkpoint_every=7,
                                   tensorboard=True), ARGS) == base
    # coefficients are arguments (TrainState.hparams; whether one is set shows in the
    # arguments' structure), and so are a sweep's values: only their count is in the key
    assert program_key("p", Config(learning_rate=1e-3, gamma=0.9), ARGS) == base
    sweep = program_key("p", Config(sweep=(("gamma", (0.9, 0.99)),)), ARGS)
    assert sweep == program_key("p", Config(sweep=(("gamma", (0.5, 0.7)),)), ARGS) != base


def _another(name, value):
    """A value of config field `name` other than `value` (the key validates nothing, but the
    task must be a shipped one to be keyed at all)."""
    if name in ("task", "sweep"):
        return {"task": "pendulum", "sweep": (("gamma", (0.9,)),)}[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)) or value is None:
        return (value or 0) + 1
    return value + ("x" if isinstance(value, str) else (2,))


def test_every_field_changes_the_key_unless_declared_host_only_or_a_coefficient():
    # the roles come from each field's declaration (`config.static(..., host_only=True)`,
    # `config.leaf`): a field added without one is keyed, so it never reuses a program
    base = program_key("p", Config(), ARGS)
    assert len(HOST_ONLY) >= 9 and len(leaf_fields()) >= 16  # both ways are exercised
    for f in dataclasses.fields(Config):
        other = Config().replace(**{f.name: _another(f.name, getattr(Config(), f.name))})
        assert getattr(other, f.name) != getattr(Config(), f.name), f.name
        same = program_key("p", other, ARGS) == base
        assert same == (f.name in HOST_ONLY or f.name in leaf_fields()), f.name


def test_a_task_that_distillax_does_not_ship_is_never_keyed():
    assert envs.shipped("cartpole")
    shipped = envs.task("cartpole")
    envs.register("mine", shipped.make)  # the same code under a name of the user's
    assert not envs.shipped("mine")
    assert program_key("p", Config(task="mine"), ARGS) is None
    envs.register("cartpole", lambda: shipped.make())  # a shipped name, redefined
    assert not envs.shipped("cartpole")
    assert program_key("p", Config(), ARGS) is None
    # a registration that says it is shipped-style code is keyed (see test_tasks.py)
    envs.register("mine", shipped.make, trusted=True)
    assert program_key("p", Config(task="mine"), ARGS) is not None
    del envs.TASKS["cartpole"]  # (the fixture `_registries_restored` would, after the test)
    assert envs.shipped("cartpole")


def test_an_entry_is_unsealed_only_whole_and_with_its_own_key():
    key, payload = bytes(range(32)), b"an executable"
    entry = seal(key, payload)
    head = len(programs.MAGIC) + 32 + 8
    assert entry.startswith(programs.MAGIC) and len(entry) == head + len(payload)
    assert entry[head - 8:head] == len(payload).to_bytes(8, "little")
    assert unseal(key, entry) == payload
    flipped = entry[:-1] + bytes([entry[-1] ^ 1])
    assert unseal(key, flipped) is None  # a damaged payload
    assert unseal(bytes(32), entry) is None  # sealed by another store
    assert unseal(key, entry[:-1]) is None  # cut short
    assert unseal(key, entry + b"x") is None  # more than its length says
    assert unseal(key, b"DISTILLAX" + entry[9:]) is None  # not this format
    assert unseal(key, b"") is None


def _lower(scale: float = 1.0):
    return jax.jit(lambda x, n: jnp.sin(x) * n * scale).lower(*ARGS)


def test_a_stored_program_is_loaded_and_computes_what_the_compiled_one_does(tmp_path):
    store = Store(directory=str(tmp_path), max_bytes=1 << 30)
    compiled, loaded = load_or_compile(store, "k", _lower)
    assert not loaded and sorted(os.listdir(tmp_path)) == [".secret", "k.bin"]
    assert os.stat(tmp_path).st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / ".secret").st_mode & 0o777 == 0o600

    def boom():
        raise AssertionError("a stored program was lowered again")

    again, loaded = load_or_compile(store, "k", boom)
    assert loaded
    x = (jnp.arange(6.0).reshape(3, 2), jnp.int32(3))
    np.testing.assert_array_equal(np.asarray(again(*x)), np.asarray(compiled(*x)))
    assert again.recompile is None  # trusted after its first call returned
    # no store or no key (a task the key cannot see): compiled, nothing stored
    assert load_or_compile(None, "k", _lower)[1] is False
    other = Store(directory=str(tmp_path / "other"), max_bytes=1 << 30)
    assert load_or_compile(other, None, _lower)[1] is False
    assert not (tmp_path / "other").exists()


class _Planted:
    """Unpickling this creates a file: what a planted entry could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["old-format", "sealed-elsewhere", "flip", "truncate",
                                 "garbage"])
def test_an_entry_this_store_did_not_seal_is_never_deserialized(tmp_path, how):
    store = Store(directory=str(tmp_path / "store"), max_bytes=1 << 30)
    load_or_compile(store, "k", _lower)
    path, marker = store.path("k"), tmp_path / "ran"
    planted = pickle.dumps(_Planted(str(marker)))
    if how == "old-format":  # the previous format: a pickle, checked by a plain digest
        import hashlib
        data = pickle.dumps((hashlib.sha256(planted).hexdigest(), planted))
    elif how == "sealed-elsewhere":  # well formed, under another store's secret
        data = seal(b"\0" * 32, planted)
    elif how == "flip":
        data = bytearray(open(path, "rb").read())
        data[len(data) // 2] ^= 0xFF
        data = bytes(data)
    elif how == "truncate":
        data = open(path, "rb").read()[:1000]
    else:
        data = b"not a program"
    open(path, "wb").write(data)
    lowered = []
    _, loaded = load_or_compile(store, "k", lambda: lowered.append(1) or _lower())
    assert not loaded and lowered == [1] and not marker.exists()
    assert load_or_compile(store, "k", _lower)[1]  # the entry was replaced


def test_an_unwritable_directory_only_means_nothing_is_stored(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the directory would go
    compiled, loaded = load_or_compile(Store(directory=str(blocked / "programs"),
                                             max_bytes=1 << 30), "k", _lower)
    assert not loaded
    assert float(compiled(*ARGS)[0, 0]) == 0.0


def test_eviction_removes_the_least_recently_used_until_the_cap(tmp_path):
    for i, name in enumerate(["a", "b", "c", "d"]):
        (tmp_path / f"{name}.bin").write_bytes(b"x" * 100)
        os.utime(tmp_path / f"{name}.bin", (1000 + i, 1000 + i))  # a oldest ... d newest
    (tmp_path / ".secret").write_bytes(b"k" * 32)  # not an entry: never counted or removed
    os.utime(tmp_path / "b.bin", (2000, 2000))  # b used last
    removed = programs.evict(str(tmp_path), 250)
    assert [os.path.basename(p) for p in removed] == ["a", "c"] or \
        [os.path.basename(p) for p in removed] == ["a.bin", "c.bin"]
    assert sorted(os.listdir(tmp_path)) == [".secret", "b.bin", "d.bin"]
    # the entry just written goes last, however old its time stamp
    os.utime(tmp_path / "d.bin", (1, 1))
    assert [os.path.basename(p) for p in programs.evict(str(tmp_path), 100, keep=str(
        tmp_path / "d.bin"))] == ["b.bin"]


def test_the_store_stays_under_its_cap(tmp_path):
    one = len(seal(b"k" * 32, pickle.dumps(serialize_executable.serialize(_lower().compile()))))
    store = Store(directory=str(tmp_path), max_bytes=int(2.5 * one))
    for i in range(4):
        load_or_compile(store, f"k{i}", lambda i=i: _lower(float(i + 2)))
        os.utime(store.path(f"k{i}"), (1000 + i, 1000 + i))
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".bin")) == ["k2.bin", "k3.bin"]
    # an entry larger than the whole cap is not stored at all
    tiny = Store(directory=str(tmp_path / "tiny"), max_bytes=one // 2)
    load_or_compile(tiny, "k", _lower)
    assert programs.entries(tiny.directory) == []


@pytest.fixture
def jax_cache(tmp_path):
    """JAX's persistent compilation cache in a fresh directory, for one test."""
    old = {k: getattr(jax.config, k) for k in ("jax_compilation_cache_dir",
                                                "jax_persistent_cache_min_compile_time_secs",
                                                "jax_persistent_cache_min_entry_size_bytes")}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    compilation_cache.reset_cache()
    yield
    for k, v in old.items():
        jax.config.update(k, v)
    compilation_cache.reset_cache()


FUSED_ARGS = (jnp.zeros(1000), jnp.int32(1))


def _fused(x, n, scale=1.0):  # large enough for XLA:CPU to emit fusions as functions
    return jnp.sort(jnp.cos(x) * (jnp.arange(x.shape[0]) > 3)).sum() * n * scale


def _fused2(x, n):  # another program, so that no earlier test's compile of it interferes
    return _fused(x, n, 2.0)


def test_a_program_that_jaxs_cache_served_is_not_stored(tmp_path, jax_cache):
    """Issue 23's root cause: an executable XLA:CPU loaded from JAX's cache serializes
    without its object code, so it was stored, loaded, and then failed at its first call."""
    lower = lambda: jax.jit(_fused).lower(*FUSED_ARGS)  # noqa: E731
    store = Store(directory=str(tmp_path / "store"), max_bytes=1 << 30)
    load_or_compile(store, "first", lower)  # compiled here: stored (and in JAX's cache)
    assert [os.path.basename(p) for _, _, p in programs.entries(store.directory)] == \
        ["first.bin"]
    jax.clear_caches()  # (so that JAX's persistent cache, not its memory, serves it next)
    served, loaded = load_or_compile(store, "second", lower)
    assert not loaded and float(served(*FUSED_ARGS)) == float(jax.jit(_fused)(*FUSED_ARGS))
    assert [os.path.basename(p) for _, _, p in programs.entries(store.directory)] == \
        ["first.bin"]


_LOAD_AND_CALL = """
import sys, warnings
import jax, jax.numpy as jnp
from distillax import logs, programs
sys.path.insert(0, {tests!r})
from test_programs import FUSED_ARGS, _fused2
store = programs.Store(directory={store!r}, max_bytes=1 << 30)
program, loaded = programs.load_or_compile(store, "k", lambda: jax.jit(_fused2).lower(*FUSED_ARGS))
donated = jnp.zeros(1000)
with warnings.catch_warnings(record=True) as notes:
    warnings.simplefilter("always")
    first = float(program(donated, jnp.int32(1)))
print(loaded, first, float(program(*FUSED_ARGS)), donated.is_deleted(),
      len(programs.entries(store.directory)))
print([str(n.message) for n in notes if issubclass(n.category, logs.Note)])
"""


def test_a_stored_program_that_cannot_run_is_compiled_again_with_one_note(tmp_path, jax_cache):
    """The fallback behind the root-cause fix: the entry the store used to write (an
    executable JAX's cache served, serialized) loads in a new process but fails at its first
    call; the call compiles the program instead, says so once, and returns the right value."""
    lower = lambda: jax.jit(_fused2).lower(*FUSED_ARGS)  # noqa: E731
    reference = float(lower().compile()(*FUSED_ARGS))  # compiled here, and now in JAX's cache
    jax.clear_caches()
    served = lower().compile()
    store = Store(directory=str(tmp_path / "store"), max_bytes=1 << 30)
    entry = seal(programs._secret(store.directory),
                 pickle.dumps(serialize_executable.serialize(served)))
    open(store.path("k"), "wb").write(entry)
    script = _LOAD_AND_CALL.format(tests=os.path.dirname(__file__), store=store.directory)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    # loaded; the right value on the first call and after; the caller's donated argument
    # intact (the failed try ran on copies); the entry that could not run replaced
    assert lines[0] == f"True {reference} {reference} False 1"
    notes = eval(lines[1])  # a printed list of strings
    assert len(notes) == 1 and notes[0].startswith("a stored program could not run (")
    assert "not found" in notes[0] and notes[0].endswith("); compiled it again")


def test_coefficients_do_not_change_the_programs():
    """Why the key leaves coefficients out: the training and evaluation programs read them
    from their arguments (`TrainState.hparams`), so two configs that differ only in their
    values lower to the same programs."""
    from distillax import parallel
    from distillax.evaluation import make_evaluator, run_policies
    from distillax.model import build_model
    from distillax.trainer import init_run_state, make_runner

    def lowered(config):
        model = build_model(config)
        state = init_run_state(model)
        runner = make_runner(model, state, parallel.make_mesh(0), 2)
        state = runner.place(state)
        evaluator = make_evaluator(model)
        policies = run_policies(model, state)
        return (runner.step.lower(state, runner.count(2)).as_text(),
                evaluator._fn().lower(*evaluator._args(policies, True, 0)).as_text())

    small = dict(num_envs=8, num_steps=8, num_minibatches=2, update_epochs=1,
                 hidden_sizes=(8,), kmeans_samples=500, partitions=2, eval_contexts=4,
                 method="distral", coupling_coef=0.01)
    changed = {name: 0.5 * value for name, value in Config(**small).to_dict().items()
               if name in leaf_fields() and isinstance(value, float)}
    assert {"learning_rate", "gamma", "coupling_coef", "distral_alpha"} <= set(changed)
    base, other = lowered(Config(**small)), lowered(Config(**{**small, **changed}))
    assert base[0] == other[0] and base[1] == other[1]
    # (the comparison can fail: a static field changes them)
    assert lowered(Config(**{**small, "activation": "relu"}))[0] != base[0]


def test_an_unset_central_step_size_keys_other_programs_than_a_set_one():
    """Unset, the central step size is 2x the teachers' inside the program; set, it is an
    argument (`TrainState.hparams`): the arguments' tree differs, and so does the key, so a
    run that sets it after one that did not compiles its own program."""
    from distillax.trainer import hparams_of

    unset, given = Config(), Config(central_learning_rate=1e-3)
    assert "central_learning_rate" not in hparams_of(unset)
    assert programs.program_key("p", unset, hparams_of(unset)) != \
        programs.program_key("p", given, hparams_of(given))
    # (another value of a set one is the same program: only the argument changes)
    other = given.replace(central_learning_rate=5e-3)
    assert programs.program_key("p", given, hparams_of(given)) == \
        programs.program_key("p", other, hparams_of(other))
