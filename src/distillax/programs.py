"""Compiled programs kept on disk whole: a run of a config seen before loads its training and
evaluation programs without tracing, lowering or compiling them.

JAX's persistent compilation cache (`cache.use_compile_cache`) skips XLA's compile only: it
keys on the lowered program, so every run still traces and lowers its programs first, which
takes 3-4 s for the training and evaluation programs on 2 CPU cores. This store keys on what
determines a program instead, and keeps the serialized executable:
- the program's name and its arguments' structure, shapes, dtypes and shardings (the numeric
  coefficients are arguments, `TrainState.hparams`, so their values are not in the key: a run
  that changes only `--coupling-coef` loads the same programs);
- every static field of the config but the run's files and host-side cadences (`HOST_ONLY`),
  with a sweep's values reduced to their count (the values are arguments too);
- distillax's own source, hashed, and the versions of the libraries a program is made from;
- JAX's flags and `XLA_FLAGS`, the Python version and the devices.
A task that is not shipped with distillax (`envs.register`) is made of code this key cannot
see, so its programs are never stored here (they still go through JAX's cache).

What is stored, and why it can be trusted:
- Only an executable XLA compiled in this process. One that JAX's persistent cache served
  cannot be serialized again on CPU: XLA:CPU keeps no object code for a deserialized
  executable, so its serialization loads and then fails at its first call ("Function
  <fusion> not found"). That was issue 23's crash: a config whose key was new but whose
  lowered program JAX's cache already held. Such a program is used, not stored.
- An entry is a header (magic, HMAC-SHA256, length) and then the bytes; the HMAC, keyed by a
  secret this user's store created (`.secret`, mode 0600, in a 0700 directory), is checked
  before anything is deserialized. JAX's executable format is a pickle around machine code,
  so a file this store did not write is refused unread, and a damaged one is compiled again.
- A loaded program is trusted only after its first call returns (`Program`): a failure
  there compiles it again, with one note, and the call is made again.
- The store keeps at most `cache.max_bytes() / 2`, the least recently used entries evicted.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import importlib.metadata
import os
import pickle
import secrets
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import jax

from distillax import envs, logs
from distillax.config import Config, fields_with, leaf_fields

# Config fields that only the host reads (where files go, how often it checkpoints or
# evaluates): runs that differ in them compile the same programs. Declared by each field
# (`config.static(..., host_only=True)`).
HOST_ONLY = fields_with("host_only")
# Libraries whose code goes into a program.
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "chex", "gymnax", "numpy", "brax", "mujoco",
             "mujoco-mjx", "playground", "warp-lang")
# JAX flags that change where programs are cached or what is logged, not the programs.
_UNRELATED_FLAGS = ("jax_compilation_cache", "jax_persistent_cache",
                    "jax_enable_compilation_cache", "jax_log_compiles",
                    "jax_explain_cache_misses", "jax_logging_level", "jax_pprint",
                    "jax_traceback_filtering", "jax_raise_persistent_cache_errors")

MAGIC = b"distillax program v2\n"  # an entry: MAGIC, HMAC (32 bytes), length (8), payload
_SECRET = ".secret"
_SUFFIX = ".bin"


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


def program_fields(config: Config) -> dict[str, Any]:
    """The config as far as it makes a program: no host-only field, no coefficient (read from
    the arguments), and a sweep as its fields and value counts (the values are arguments;
    the count sets the run axis, which the arguments' shapes show as well)."""
    skip = set(HOST_ONLY) | set(leaf_fields())
    fields = {k: v for k, v in config.to_dict().items() if k not in skip}
    fields["sweep"] = [(name, len(values)) for name, values in config.sweep]
    return fields


def program_key(name: str, config: Config, args: Any) -> str | None:
    """The cache key of program `name` of `config` called with `args` (arrays or
    `jax.ShapeDtypeStruct`s); None where it cannot be keyed safely: a task not shipped with
    distillax, or a multi-process run (its executables are made for one process's view)."""
    if not envs.shipped(config.task) or jax.process_count() > 1:
        return None
    flags = {k: v for k, v in jax.config.values.items() if not k.startswith(_UNRELATED_FLAGS)}
    parts = [name, sorted(program_fields(config).items()), _source_digest(), _versions(),
             sys.version, sorted((k, repr(v)) for k, v in flags.items()),
             os.environ.get("XLA_FLAGS", ""),
             [(d.id, d.platform, d.device_kind) for d in jax.devices()], _avals(args)]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


# --- entries: sealed bytes ------------------------------------------------------------------


def _secret(directory: str) -> bytes:
    """This store's HMAC key: 32 random bytes in `directory/.secret`, made on first use (the
    directory 0700, the file 0600, created exclusively so two processes agree on one)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, _SECRET)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as f:
            key = f.read()
        if len(key) != 32:
            raise OSError(f"{path} is not a program store's key") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.digest(key, MAGIC + len(payload).to_bytes(8, "little") + payload, "sha256")


def seal(key: bytes, payload: bytes) -> bytes:
    """An entry's bytes: MAGIC, HMAC-SHA256(key, MAGIC + length + payload), length, payload."""
    return MAGIC + _mac(key, payload) + len(payload).to_bytes(8, "little") + payload


def unseal(key: bytes, entry: bytes) -> bytes | None:
    """The payload of `entry` if this store sealed it with `key` and it is whole, else None.
    Nothing in `entry` is interpreted before the HMAC matches."""
    head = len(MAGIC) + 32 + 8
    if len(entry) < head or not entry.startswith(MAGIC):
        return None
    mac, size = entry[len(MAGIC):head - 8], int.from_bytes(entry[head - 8:head], "little")
    payload = entry[head:]
    if len(payload) != size or not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    return payload


def entries(directory: str) -> list[tuple[float, int, str]]:
    """The store's entries as (last use, bytes, path), least recently used first."""
    out = []
    for name in os.listdir(directory) if os.path.isdir(directory) else ():
        path = os.path.join(directory, name)
        if name.endswith(_SUFFIX):
            try:
                st = os.stat(path)
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            out.append((st.st_mtime, st.st_size, path))
    return sorted(out)


def evict(directory: str, max_bytes: int, keep: str | None = None) -> list[str]:
    """Remove least recently used entries until the store holds at most `max_bytes`
    (`keep`, the entry just written, goes last); returns the removed paths."""
    old = entries(directory)
    old.sort(key=lambda e: e[2] == keep)  # stable: still by last use otherwise
    total, removed = sum(e[1] for e in old), []
    for _, size, path in old:
        if total <= max_bytes:
            break
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        total -= size
        removed.append(path)
    return removed


# --- compiling, loading, storing -------------------------------------------------------------

_served = threading.local()  # per thread: the runs' two programs compile side by side


def _count_hits(event: str, **_: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _served.hits = getattr(_served, "hits", 0) + 1


jax.monitoring.register_event_listener(_count_hits)


@dataclasses.dataclass(frozen=True)
class Store:
    """The program store: its directory and its size cap in bytes (`cache.max_bytes() / 2`)."""

    directory: str
    max_bytes: int

    def path(self, key: str) -> str:
        return os.path.join(self.directory, key + _SUFFIX)


def _compile(store: Store | None, key: str | None,
             lower: Callable[[], jax.stages.Lowered]) -> jax.stages.Compiled:
    """`lower().compile()`, stored under `key` when XLA compiled it here (not when JAX's
    persistent cache served it: see the module docstring) and the store takes it."""
    before = getattr(_served, "hits", 0)
    compiled = lower().compile()
    if store is None or key is None or getattr(_served, "hits", 0) != before:
        return compiled
    try:
        from jax.experimental import serialize_executable

        payload = pickle.dumps(serialize_executable.serialize(compiled))
        entry = seal(_secret(store.directory), payload)
        if len(entry) <= store.max_bytes:
            # whole or not at all: a killed run leaves no partial entry
            logs.write_atomic(store.path(key), entry)
            evict(store.directory, store.max_bytes, keep=store.path(key))
    except Exception:  # not serializable, or the directory not writable: only not stored
        pass
    return compiled


def _load(store: Store, key: str) -> jax.stages.Compiled | None:
    """The program stored under `key`, or None: none there, or one this store did not seal
    (damaged, or written by someone else), or one that does not deserialize."""
    try:
        with open(store.path(key), "rb") as f:
            payload = unseal(_secret(store.directory), f.read())
        if payload is None:
            return None
        from jax.experimental import serialize_executable

        compiled = serialize_executable.deserialize_and_load(*pickle.loads(payload))
        os.utime(store.path(key))  # its last use, for eviction
        return compiled
    except Exception:  # none yet, unreadable, or from an incompatible build: compiled again
        return None


@dataclasses.dataclass
class Program:
    """A compiled program, called as the executable is. One loaded from the store is trusted
    after its first call returns: if that call fails (an executable that loads but cannot
    run), the program is compiled again, one `logs.Note` says so, and the call is made again, on
    the original arguments (the first try ran on copies, since a program may donate them)."""

    compiled: jax.stages.Compiled
    # set while a program loaded from the store has not yet run: how to compile it instead
    recompile: Callable[[], jax.stages.Compiled] | None = None

    def __call__(self, *args: Any) -> Any:
        if self.recompile is None:
            return self.compiled(*args)
        copies = jax.tree.map(
            lambda x: jax.device_put(x, x.sharding, may_alias=False)
            if isinstance(x, jax.Array) else x, args)
        try:
            out = jax.block_until_ready(self.compiled(*copies))
        except Exception as e:  # (XLA reports it as a JaxRuntimeError, at the call or the wait)
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            warnings.warn(f"a stored program could not run ({why[:120]}); compiled it again",
                          logs.Note, stacklevel=2)
            self.compiled = self.recompile()
            out = self.compiled(*args)
        self.recompile = None
        return out


def load_or_compile(store: Store | None, key: str | None,
                    lower: Callable[[], jax.stages.Lowered]) -> tuple[Program, bool]:
    """The program stored under `key` in `store`, or `lower().compile()` (stored there when
    it was compiled here); returns it and whether it was loaded. `store` or `key` None:
    compiled, not stored."""
    if store is not None and key is not None:
        loaded = _load(store, key)
        if loaded is not None:
            def recompile() -> jax.stages.Compiled:
                try:  # the entry cannot run: replaced by what is compiled now, if storable
                    os.remove(store.path(key))
                except OSError:
                    pass
                return _compile(store, key, lower)

            return Program(loaded, recompile), True
    return Program(_compile(store, key, lower)), False
