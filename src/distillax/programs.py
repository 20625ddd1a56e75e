"""Compiled programs kept on disk whole: a run of a config seen before loads its training and
evaluation programs without tracing, lowering or compiling them.

JAX's persistent compilation cache (`run.use_compile_cache`) skips XLA's compile only: it
keys on the lowered program, so every run still traces and lowers its programs first, which
takes 3-4 s for the training and evaluation programs on 2 CPU cores. This cache keys on what
determines a program instead, and stores the serialized executable:
- the program's name and its arguments' structure, shapes, dtypes and shardings;
- every field of the config but the run's files and host-side cadences (`HOST_ONLY`);
- distillax's own source, hashed, and the versions of the libraries a program is made from;
- JAX's flags and `XLA_FLAGS`, the Python version and the devices.
A task that is not shipped with distillax (`envs.register`) is made of code this key cannot
see, so its programs are never stored here (they still go through JAX's cache). A stored
program is the executable the same config compiled, so results are the same bit for bit; an
entry that cannot be read is compiled again and replaced.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any

import jax

from distillax import envs, logs
from distillax.config import Config

# Config fields that only the host reads (where files go, how often it checkpoints or
# evaluates): runs that differ in them compile the same programs.
HOST_ONLY = ("checkpoint_dir", "checkpoint_every", "max_to_keep", "eval_every", "tensorboard",
             "wandb", "wandb_project", "wandb_name", "wandb_mode")
# Libraries whose code goes into a program.
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "chex", "gymnax", "numpy", "brax", "mujoco",
             "mujoco-mjx")
# JAX flags that change where programs are cached or what is logged, not the programs.
_UNRELATED_FLAGS = ("jax_compilation_cache", "jax_persistent_cache", "jax_log_compiles",
                    "jax_explain_cache_misses", "jax_logging_level", "jax_pprint",
                    "jax_traceback_filtering", "jax_raise_persistent_cache_errors")


@functools.cache
def _source_digest() -> str:
    """sha256 over distillax's Python files (paths and contents)."""
    root = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(base, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def _versions() -> list[tuple[str, str]]:
    out = []
    for lib in LIBRARIES:
        try:
            out.append((lib, importlib.metadata.version(lib)))
        except importlib.metadata.PackageNotFoundError:
            out.append((lib, "absent"))
    return out


def _avals(args: Any) -> list[str]:
    """Each argument leaf's shape, dtype and sharding, and the arguments' tree structure."""
    leaves, tree = jax.tree.flatten(args)
    return [str(tree)] + [f"{getattr(x, 'shape', ())} {getattr(x, 'dtype', type(x).__name__)} "
                          f"{getattr(x, 'weak_type', '')} {getattr(x, 'sharding', '')}"
                          for x in leaves]


def program_key(name: str, config: Config, args: Any) -> str | None:
    """The cache key of program `name` of `config` called with `args` (arrays or
    `jax.ShapeDtypeStruct`s); None where it cannot be keyed safely: a task not shipped with
    distillax, or a multi-process run (its executables are made for one process's view)."""
    if not envs.shipped(config.task) or jax.process_count() > 1:
        return None
    fields = {k: v for k, v in config.to_dict().items() if k not in HOST_ONLY}
    flags = {k: v for k, v in jax.config.values.items() if not k.startswith(_UNRELATED_FLAGS)}
    parts = [name, sorted(fields.items()), _source_digest(), _versions(), sys.version,
             sorted((k, repr(v)) for k, v in flags.items()),
             os.environ.get("XLA_FLAGS", ""),
             [(d.id, d.platform, d.device_kind) for d in jax.devices()], _avals(args)]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def load_or_compile(directory: str | None, key: str | None,
                    lower: Callable[[], jax.stages.Lowered]) -> tuple[jax.stages.Compiled, bool]:
    """The program stored under `key` in `directory`, or `lower().compile()` stored there;
    returns it and whether it was loaded. `directory` or `key` None: compiled, not stored."""
    if directory is None or key is None:
        return lower().compile(), False
    from jax.experimental import serialize_executable

    path = os.path.join(directory, f"{key}.bin")
    try:
        with open(path, "rb") as f:
            digest, data = pickle.load(f)
        # (a damaged executable that still unpickled would run garbage: check its bytes)
        if hashlib.sha256(data).hexdigest() == digest:
            return serialize_executable.deserialize_and_load(*pickle.loads(data)), True
    except Exception:  # none yet, or a damaged or incompatible one: compiled and stored below
        pass
    compiled = lower().compile()
    try:
        data = pickle.dumps(serialize_executable.serialize(compiled))
        os.makedirs(directory, exist_ok=True)
        # whole or not at all: a killed run leaves no partial entry
        logs.write_atomic(path, pickle.dumps((hashlib.sha256(data).hexdigest(), data)))
    except Exception:  # not serializable, or the directory not writable: only not stored
        pass
    return compiled, False
