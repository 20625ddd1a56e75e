"""Where compiled programs are cached, how much they may take, and how to empty it.

    python -m distillax.cache          # where the cache is and what it holds
    python -m distillax.cache clear    # empty it (both parts below)

A run compiles through two caches in one directory (default `$XDG_CACHE_HOME/distillax/jax`,
`~/.cache/distillax/jax` without it):
- JAX's persistent compilation cache (the directory itself): executables keyed by the lowered
  program, so it skips XLA's compile but not tracing and lowering;
- distillax's program store (`programs/`, `distillax.programs`): whole executables keyed by
  the config, so a config seen before is neither traced, lowered nor compiled.
`DISTILLAX_CACHE_BYTES` (default 2G; K, M, G suffixes) caps the directory: each part keeps
at most half, evicting the least recently used entries. Both hold only executables, keyed
by what made them, so results are the same bit for bit with or without them.
"""

from __future__ import annotations

import os
import re
import shutil
import sys

import jax

from distillax.config import ConfigError

ENV_BYTES = "DISTILLAX_CACHE_BYTES"
DEFAULT_BYTES = 2 << 30
PROGRAMS = "programs"  # the program store, inside the compilation cache's directory
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def default_cache_dir() -> str:
    """`$XDG_CACHE_HOME/distillax/jax` (default `~/.cache/distillax/jax`)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "distillax", "jax")


def max_bytes() -> int:
    """The cache's cap in bytes, from `DISTILLAX_CACHE_BYTES` (`DEFAULT_BYTES` unset); raises
    `ConfigError` naming the variable and its value for anything but a size."""
    text = os.environ.get(ENV_BYTES, "").strip()
    if not text:
        return DEFAULT_BYTES
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text, re.IGNORECASE)
    if m is None:
        raise ConfigError(f"environment variable {ENV_BYTES} = {text!r} is invalid: a size in "
                          "bytes such as 2G, 500M or 1073741824 (0: store nothing)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def use_compile_cache(directory: str | None) -> str | None:
    """Point JAX's persistent compilation cache at `directory`, capped at half of
    `max_bytes()` (None: leave JAX's settings as they are). A cache directory the user set
    already (`jax_compilation_cache_dir`, e.g. by JAX_COMPILATION_CACHE_DIR) wins. Every
    program is cached, however quick to compile: on a 2-core CPU the run's few programs take
    most of a short run. Returns the directory in use."""
    if directory is None:
        return jax.config.jax_compilation_cache_dir
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        jax.config.update("jax_compilation_cache_max_size", max_bytes() // 2)
    return jax.config.jax_compilation_cache_dir


def size(directory: str) -> tuple[int, int]:
    """(files, bytes) under `directory`."""
    files = total = 0
    for base, _, names in os.walk(directory):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(base, name))
                files += 1
            except OSError:  # removed meanwhile
                pass
    return files, total


def clear(directory: str) -> tuple[int, int]:
    """Remove the cache in `directory` (JAX's entries and the program store); returns the
    (files, bytes) removed."""
    removed = size(directory)
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    return removed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    directory = default_cache_dir()
    if argv not in ([], ["clear"]):
        print("usage: python -m distillax.cache [clear]", file=sys.stderr)
        return 2
    try:
        cap = max_bytes()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if argv == ["clear"]:
        files, total = clear(directory)
        print(f"removed {directory}: {files} files, {total / 2**20:.1f} MiB")
        return 0
    files, total = size(directory)
    stored = size(os.path.join(directory, PROGRAMS))
    print(f"{directory}: {files} files, {total / 2**20:.1f} MiB (program store: {stored[0]} "
          f"files, {stored[1] / 2**20:.1f} MiB); cap {cap / 2**20:.0f} MiB ({ENV_BYTES}); "
          "empty it with: python -m distillax.cache clear")
    return 0


if __name__ == "__main__":
    sys.exit(main())
