"""Shared fixtures."""

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

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
