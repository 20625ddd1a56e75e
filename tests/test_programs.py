"""The program cache (`programs.py`): what its key sees, and that an entry is loaded whole,
or compiled again when damaged."""

import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distillax import Config, envs
from distillax.programs import HOST_ONLY, load_or_compile, program_key

ARGS = (jnp.zeros((3, 2)), jnp.int32(1))


def test_the_key_changes_with_what_makes_the_program_and_not_with_the_run_files():
    base = program_key("p", Config(), ARGS)
    assert base == program_key("p", Config(), ARGS)
    assert len(base) == 64
    differs = [program_key("q", Config(), ARGS),  # another program
               program_key("p", Config(hidden_sizes=(32, 32)), ARGS),  # a static field
               program_key("p", Config(learning_rate=1e-3), ARGS),  # a coefficient
               program_key("p", Config(), (jnp.zeros((3, 4)), jnp.int32(1))),  # a shape
               program_key("p", Config(), (jnp.zeros((3, 2), jnp.int32), jnp.int32(1))),
               program_key("p", Config(), (jnp.zeros((3, 2)),))]  # the arguments' structure
    assert base not in differs and len(set(differs)) == len(differs)
    # where files go and how often the host evaluates or saves: the same programs
    assert {"checkpoint_dir", "eval_every", "checkpoint_every"} <= set(HOST_ONLY)
    assert program_key("p", Config(checkpoint_dir="/tmp/x", eval_every=3, checkpoint_every=7,
                                   tensorboard=True), ARGS) == base


def test_a_task_that_distillax_does_not_ship_is_never_keyed():
    assert envs.shipped("cartpole")
    shipped = envs.TASKS["cartpole"]
    envs.register("mine", shipped)  # the same code under a name of the user's
    try:
        assert not envs.shipped("mine")
        assert program_key("p", Config(task="mine"), ARGS) is None
        envs.register("cartpole", lambda: shipped())  # a shipped name, redefined
        assert not envs.shipped("cartpole")
        assert program_key("p", Config(), ARGS) is None
    finally:
        envs.TASKS["cartpole"] = shipped
        del envs.TASKS["mine"]
    assert envs.shipped("cartpole")


def _lower():
    return jax.jit(lambda x, n: jnp.sin(x) * n).lower(*ARGS)


def test_a_stored_program_is_loaded_and_computes_what_the_compiled_one_does(tmp_path):
    compiled, loaded = load_or_compile(str(tmp_path), "k", _lower)
    assert not loaded and os.listdir(tmp_path) == ["k.bin"]  # no temporary file left

    def boom():
        raise AssertionError("a stored program was lowered again")

    again, loaded = load_or_compile(str(tmp_path), "k", boom)
    assert loaded
    x = (jnp.arange(6.0).reshape(3, 2), jnp.int32(3))
    np.testing.assert_array_equal(np.asarray(again(*x)), np.asarray(compiled(*x)))
    # no directory or no key (a task the key cannot see): compiled, nothing stored
    assert load_or_compile(None, "k", _lower)[1] is False
    assert load_or_compile(str(tmp_path / "other"), None, _lower)[1] is False
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_entry_is_compiled_again_and_replaced(tmp_path, damage):
    load_or_compile(str(tmp_path), "k", _lower)
    path = tmp_path / "k.bin"
    if damage == "flip":  # still unpickles: only the checksum tells
        digest, data = pickle.loads(path.read_bytes())
        i = len(data) // 2
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        path.write_bytes(pickle.dumps((digest, data)))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        path.write_bytes(b"not a program")
    lowered = []
    _, loaded = load_or_compile(str(tmp_path), "k", lambda: lowered.append(1) or _lower())
    assert not loaded and lowered == [1]
    assert load_or_compile(str(tmp_path), "k", _lower)[1]  # the entry was replaced


def test_an_unwritable_directory_only_means_nothing_is_stored(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the directory would go
    compiled, loaded = load_or_compile(str(blocked / "programs"), "k", _lower)
    assert not loaded
    assert float(compiled(*ARGS)[0, 0]) == 0.0
