"""Shared fixtures, and the XLA flags of the test session.

Test programs run a few iterations, so XLA's backend optimisations would cost most of the
suite's time (compiling) and buy nothing: the session compiles at backend optimisation level
0, as the library does for its run-once programs (`xla.RUN_ONCE`), and so do the
subprocesses the tests start (`XLA_FLAGS` is inherited). A test that compares a program with
a reference to float32 rounding compiles both with `PRODUCTION` (the library's default
level, which XLA_FLAGS does not override for a program that sets it).
"""

import os

FAST_COMPILE = "--xla_backend_optimization_level=0"
if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
PRODUCTION = {"xla_backend_optimization_level": 2}  # XLA's default on CPU

# A run's default persistent cache is in $XDG_CACHE_HOME/distillax: the tests' runs use one of
# their own, not the user's
import tempfile  # noqa: E402

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="distillax-tests-")

import jax  # noqa: E402
import pytest  # noqa: E402
from jax.experimental.compilation_cache import compilation_cache  # noqa: E402

CACHE_FLAGS = {"jax_compilation_cache_dir": None, "jax_persistent_cache_min_compile_time_secs": 0,
               "jax_persistent_cache_min_entry_size_bytes": 0}


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """A persistent compilation cache for this module and the subprocesses it starts."""
    path = str(tmp_path_factory.getbasetemp() / "jax-compile-cache")
    old = {k: getattr(jax.config, k) for k in CACHE_FLAGS}
    for k, v in {**CACHE_FLAGS, "jax_compilation_cache_dir": path}.items():
        jax.config.update(k, v)
    compilation_cache.reset_cache()  # the cache is set up once per process otherwise
    yield path
    for k, v in old.items():
        jax.config.update(k, v)
    compilation_cache.reset_cache()


@pytest.fixture
def jax_cache_off():
    """JAX's persistent compilation cache off for one test: every compilation is a real one.
    A run earlier in the same worker process turns it on (`cache.use_compile_cache`), and a
    program that JAX's cache serves is, by design, never stored by `programs.Store`."""
    old = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    compilation_cache.reset_cache()  # JAX sets its cache up once per process otherwise
    yield
    jax.config.update("jax_compilation_cache_dir", old)
    compilation_cache.reset_cache()


@pytest.fixture(autouse=True)
def _registries_restored():
    """Tasks and methods a test registers are gone after it: the registries are process-wide,
    and a worker runs many test files in one process."""
    from distillax import envs, methods

    tasks, specs = dict(envs.TASKS), dict(methods.METHODS)
    yield
    for registry, saved in ((envs.TASKS, tasks), (methods.METHODS, specs)):
        registry.clear()
        registry.update(saved)


@pytest.fixture(scope="module")
def standin_run(tmp_path_factory):
    """A checkpoint (step 1) that `checkpoint.read_run` accepts: a default config and a
    stand-in state, for tests that stop an evaluation before it restores anything."""
    import jax.numpy as jnp
    from flax import struct

    from distillax import checkpoint
    from distillax.config import Config

    @struct.dataclass
    class State:
        iteration: jnp.ndarray
        w: jnp.ndarray

    d = str(tmp_path_factory.mktemp("standin") / "run")
    with checkpoint.Saver(d, 1) as saver:
        saver.save(State(jnp.asarray(1, jnp.int32), jnp.zeros(2)), Config(), 1)
    return d

