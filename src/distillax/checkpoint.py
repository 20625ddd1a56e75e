"""Checkpoints: an orbax `CheckpointManager` over the full train state, the config and a version.

A run directory DIR is one orbax `CheckpointManager` root; `train` also writes its logs there:

    DIR/config.json  DIR/metrics.jsonl  DIR/results.json  DIR/tensorboard/   (train.py)
    DIR/<iteration>/state/   the whole `TrainState` pytree (orbax StandardSave: params, optimizer
                             states, normalisers, env carry, partition, RNG key, iteration)
    DIR/<iteration>/config/  the resolved `Config` as JSON (orbax JsonSave; the file `metadata`)
    DIR/<iteration>/meta/    {"format_version", "iteration", "env_steps", "devices", "digests",
                             "config_sha256", ...} (JsonSave)

Reading a checkpoint with plain orbax calls, without distillax (nested dicts keyed by the field
names of `TrainState`; works whatever device layout saved it):

    import jax, orbax.checkpoint as ocp
    from etils import epath
    step = max(ocp.utils.checkpoint_steps(DIR))      # committed checkpoints only
    path = epath.Path(DIR).resolve() / str(step)     # orbax wants absolute paths
    shapes = ocp.PyTreeCheckpointHandler().metadata(path / "state").tree
    cpu = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=cpu), shapes)
    state = ocp.StandardCheckpointer().restore(path / "state", target)
    config = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(path / "config")
    meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(path / "meta")
    state["params"]["central"]["params"]     # the central policy's weights (Flax Linen)
    state["iteration"], config["hidden_sizes"], meta["format_version"]

Saving is asynchronous: orbax copies every array to host memory before `save` returns (no
`device_host_max_bytes` limit is set, so every array is a "prioritized", synchronous D2H
transfer), and writes the files in a background thread. The caller may therefore donate the
saved state to the next training step at once; `Saver.close` waits for the writes.

Integrity: `meta["digests"]` maps every array of the state, by the dotted name orbax gives it
(`params.central.params.pi.Dense_0.kernel`), to the SHA-256 of its bytes in C order, taken at
save; `meta["config_sha256"]` is the SHA-256 of the config item as sorted-key JSON. Every
restore (`restore_train_state`, `restore_policies`: resume, evaluation, `load_policy`)
recomputes the digests of the arrays it read and refuses a mismatch as corrupt. orbax alone
would not: its OCDBT format checksums its b-tree nodes, where chunks of up to 1 KiB are kept
inline, but not the larger chunks stored in the data files, so flipped bytes there restore as
other numbers without an error. A checkpoint from before digests restores with an
`UnverifiedCheckpointWarning`. By hand, for a restored array `a`:
`hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() == meta["digests"][name]`.

Restoring for training places every array with the shardings of a state built on the current
mesh, so a checkpoint saved with 4 devices restores on 1 (and vice versa). Restoring for
evaluation (`restore_policies`) reads only the parameters, normalisers and partition, with
shapes from the checkpoint's own metadata: it needs the config, not the training code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import itertools
import json
import logging
import os
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from distillax import logs, parallel
from distillax.config import Config, ConfigError, fields_with
from distillax.contexts import Partition
from distillax.model import Model, build_model
from distillax.normalizer import RunningStats
from distillax.policy import (
    Policies,
    Policy,
    central_policy,
    central_step,
    initial_memory,
    recurrent_acts,
)

# Bump when the layout of a checkpoint changes (TrainState fields, item names, meta keys) so
# that an old checkpoint fails with a message instead of a deep orbax structure error.
FORMAT_VERSION = 1
ITEMS = ("state", "config", "meta")
try:
    _ORBAX_VERSION = importlib.metadata.version("orbax-checkpoint")
except importlib.metadata.PackageNotFoundError:  # a source checkout
    _ORBAX_VERSION = "unknown"

# Config fields a resumed run may change: they set how long to run and how to report, never a
# shape, a coefficient or the data. Changing `total_steps` also changes the horizon of the
# learning-rate annealing and of a linear distillation schedule; `num_devices` the device layout
# (the same computation, not bit-for-bit the same float reductions). Declared by each field
# (`config.static(..., may_change_on_resume=True)`, or `host_only=True`).
RESUME_MAY_CHANGE = fields_with("may_change_on_resume")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, corrupt, of another format version, or does not match
    the config it is resumed with. The message names the directory, the step and what differs."""


class UnverifiedCheckpointWarning(logs.Note):
    """A checkpoint saved before distillax stored digests was restored without an integrity
    check (its arrays may still be sound; nothing can tell)."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a checkpoint says about its run, read without touching the arrays."""

    directory: str
    step: int  # the checkpoint's step = the iteration it was saved at
    steps: tuple[int, ...]  # every committed step in the directory
    config: Config
    meta: dict[str, Any]


def steps(directory: str) -> tuple[int, ...]:
    """The committed checkpoint steps in `directory` (empty if none or no such directory).

    An interrupted save leaves a `<step>.orbax-checkpoint-tmp-*` directory that orbax does
    not count, so a `kill -9` during a save falls back to the previous checkpoint.
    """
    return tuple(sorted(ocp.utils.checkpoint_steps(directory))) if os.path.isdir(directory) else ()


def _why(e: Exception) -> str:
    """An orbax / tensorstore error, shortened to what a person reads (they can run long)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}" + (" ..." if len(text) > 300 else "")


# --- integrity: SHA-256 of every array's bytes, stored in `meta` at save, checked at restore ---

DIGEST = "sha256"


def leaf_name(path: tuple[Any, ...]) -> str:
    """The dotted name orbax gives a leaf of the saved tree: `params.central.params.pi.Dense_0.
    kernel`, `opt.teacher.0.mu....` (the same for a `TrainState` and for the nested dicts that
    orbax's metadata returns, so a partial restore finds the digests of a full save)."""
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            parts.append(str(k.key))
        else:
            parts.append(str(k))
    return ".".join(parts)


def _hex(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).reshape(-1).view(np.uint8)).hexdigest()


def _host(x: Any) -> np.ndarray:
    """The global value of a fully addressable array, on the host, without caching a host copy
    on `x`. `jax.device_get` (its `copy_to_host_async`) would: on CPU the train step's donation
    of `x` then silently falls back to a copy. `np.asarray` of a shard's data does not."""
    if not isinstance(x, jax.Array):
        return np.asarray(x)
    shards = [s for s in x.addressable_shards if s.replica_id == 0]
    if len(shards) == 1:
        return np.asarray(shards[0].data)
    out = np.empty(x.shape, x.dtype)  # split across this process's devices: assemble it
    for s in shards:
        out[s.index] = np.asarray(s.data)
    return out


def digests(tree: Any) -> dict[str, str]:
    """`{leaf name: SHA-256 hex of the leaf's bytes in C order}` for every array of `tree`.

    The digest is of the global array, so it does not depend on the device layout: a state
    saved on 4 devices checks on 1. Each host copy is hashed and dropped at once. An array
    split across processes is gathered first (a collective: every process calls this
    together, as it calls `Saver.save`). The cost is one host copy (free on CPU) and one
    SHA-256 pass over the state's bytes.
    """
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    split = [i for i, (_, x) in enumerate(flat)
             if isinstance(x, jax.Array) and not x.is_fully_addressable]
    gathered = {}
    if split:
        from jax.experimental import multihost_utils
        gathered = dict(zip(split, multihost_utils.process_allgather(
            [flat[i][1] for i in split], tiled=True)))
    return {leaf_name(p): _hex(np.asarray(gathered[i]) if i in gathered else _host(x))
            for i, (p, x) in enumerate(flat)}


def _config_digest(raw: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()


def _unverified_note(where: str) -> None:
    warnings.warn(f"{where} has no digests (saved before distillax stored them): restored "
                  "without an integrity check", UnverifiedCheckpointWarning, stacklevel=4)


@contextlib.contextmanager
def cli_notes(file: Any = None) -> Iterator[None]:
    """For command lines: inside, a `logs.Note` (an `UnverifiedCheckpointWarning`, a stored
    program compiled again) prints as the one line `note: <message>` on `file` (default
    stderr), once per message, instead of Python's two-line `path:line: Category: ...` form.
    Other warnings are shown as before."""
    with warnings.catch_warnings():
        warnings.simplefilter("once", logs.Note)
        show = warnings.showwarning

        def one_line(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
            if issubclass(category, logs.Note):
                print(f"note: {message}", file=file if file is not None else sys.stderr)
            else:
                show(message, category, *args, **kwargs)

        warnings.showwarning = one_line
        yield


def verify(tree: Any, info: RunInfo, hint: str = "") -> None:
    """Raise `CheckpointError` (naming the step, the arrays and "corrupt") if an array of the
    restored `tree` differs from its digest in `info.meta` (or has none there); warn with
    `UnverifiedCheckpointWarning` if the checkpoint predates digests. `tree` may be any
    subtree set of the saved state (a partial restore): only its leaves are checked."""
    where = f"checkpoint {os.path.join(info.directory, str(info.step))}"
    stored = info.meta.get("digests")
    if stored is None:
        _unverified_note(where)
        return
    got = digests(tree)
    bad = sorted(n for n, h in got.items() if stored.get(n) != h)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise CheckpointError(
            f"{where} (step {info.step}) is corrupt: {len(bad)} of {len(got)} arrays differ from "
            f"their {DIGEST} digest taken at save ({shown}); its files changed on disk{hint}")


def _is_orphaned_callback(u: Any) -> bool:
    """orbax runs each restore in a fresh asyncio loop and closes it as soon as one tensorstore
    read fails; the reads still in flight then complete into the closed loop, and tensorstore
    reports each as an unraisable "Event loop is closed" error (dozens of tracebacks, some at
    exit). Exactly that: a RuntimeError raised by `call_soon_threadsafe`, with no object."""
    return (u.object is None and isinstance(u.exc_value, RuntimeError)
            and str(u.exc_value) == "Event loop is closed"
            and any(f.name == "call_soon_threadsafe"
                    for f in traceback.extract_tb(u.exc_traceback)))


def _silence_orphaned_callbacks() -> None:
    """Drop the orphaned callbacks' noise (`_is_orphaned_callback`) for the rest of the process;
    every other unraisable error goes to the previous hook. Installed once, by the first
    checkpoint read or `Saver` (not at import), and before any orbax call: the orphans can
    fire while the failed call is still unwinding, and at any later time up to exit."""
    previous = sys.unraisablehook
    if getattr(previous, "_distillax_orphans", False):
        return

    def hook(u: Any) -> None:
        if not _is_orphaned_callback(u):
            previous(u)

    hook._distillax_orphans = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


class _OrbaxErrorLogs(logging.Filter):
    """Drops orbax's own ERROR records: each failed background write logs one, with the thread's
    traceback, before orbax raises it again from `wait_until_finished` or the next `save`, where
    `Saver` turns it into the one `CheckpointError` the caller reports.

    One filter per process, installed by the first `Saver` and kept: after a failed save,
    orbax's threads abandoned at a barrier can outlive `close` and log the same failure later.
    Hands each record's exception to every open `Saver` that has none yet (`failure`): the
    earliest sign that a write of this process failed. In a multi-process run it is the only
    one in time: orbax's finalize thread holds the error until every process has passed a
    barrier, which the others reach only once their own writes are done (`_Processes`)."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[Saver] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or f"{os.sep}orbax{os.sep}" not in record.pathname:
            return True
        for saver in self.open:
            if saver.failure is None and record.exc_info:
                saver.failure = record.exc_info[1]
        return False


_ORBAX_ERRORS = _OrbaxErrorLogs()


def agree(running: bool, failure: str | None,
          gather: Callable[[str], list[str]]) -> tuple[bool, str | None]:
    """One verdict on the latest save, the same on every process of a run, from each process's
    own (still being written, why it failed or None): (any process still writing, the failure
    of the first process in process order that has one, or None). `gather(text)` is every
    process's `text` in process order (`_Processes.gather`; `[text]` in a single process)."""
    states = gather(f"failed:{failure}" if failure else "running" if running else "done")
    failures = [s.removeprefix("failed:") for s in states if s.startswith("failed:")]
    return "running" in states, (failures[0] if failures else None)


_SAVERS = itertools.count()  # numbers each process's Savers alike: their keys in `_Processes`


class _Processes:
    """How the processes of a multi-process run agree on their saves: through the key-value
    store of jax.distributed's coordination service (where orbax keeps its own barriers), under
    the key prefix `prefix`. `client`, `index` and `count` default to this run's.

    orbax writes each process's shards in a background thread, which waits at a barrier for
    the other processes before the primary commits the step. A process whose write failed
    never arrives, so `barrier`, given to orbax as its `barrier_sync_fn`, polls and gives up
    once `aborted` is set (after `agree` found a failure): every background thread ends, and
    no process waits for orbax's 20-minute timeout."""

    def __init__(self, prefix: str, client: Any = None, index: int | None = None,
                 count: int | None = None):
        self.client = client or ocp.multihost.get_jax_distributed_client()
        self.index = jax.process_index() if index is None else index
        self.count = jax.process_count() if count is None else count
        self.prefix, self.aborted = prefix, threading.Event()
        self._round, self._uses, self._lock = 0, Counter(), threading.Lock()
        self._timeout_ms = ocp.multihost.coordination_timeout() * 1000

    def gather(self, text: str) -> list[str]:
        """Every process's `text`, in process order; every process calls it together."""
        self._round += 1
        key = f"{self.prefix}/gather/{self._round}"
        self.client.key_value_set(f"{key}/{self.index}", text)
        if self._round > 2:  # every process has read round r - 2: it has set its round r - 1
            self.client.key_value_delete(f"{self.prefix}/gather/{self._round - 2}/{self.index}")
        return [self.client.blocking_key_value_get(f"{key}/{i}", self._timeout_ms)
                for i in range(self.count)]

    def barrier(self, *, key: str, timeout_ms: int) -> None:
        """Return once every process has called it with `key` as often as this one (orbax
        reuses keys); raise `CheckpointError` once `aborted` is set, `TimeoutError` after
        `timeout_ms`."""
        with self._lock:  # orbax calls from its background threads
            self._uses[key] += 1
            where = f"{self.prefix}/barrier/{key}/{self._uses[key]}/"
        self.client.key_value_set(f"{where}{self.index}", "")
        deadline = time.monotonic() + timeout_ms / 1000
        while len(self.client.key_value_dir_get(where)) < self.count:
            if self.aborted.wait(0.01):
                raise CheckpointError(f"barrier {key!r} abandoned: a save failed")
            if time.monotonic() > deadline:
                raise TimeoutError(f"barrier {key!r}: not every process arrived in "
                                   f"{timeout_ms / 1000:.0f} s")


def _step_path(directory: str, step: int) -> epath.Path:
    return epath.Path(os.path.abspath(directory)) / str(step)


def _read_json(path: epath.Path) -> dict[str, Any]:
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
        return dict(ckptr.restore(path))


def read_run(directory: str, step: int | None = None) -> RunInfo:
    """Config and metadata of checkpoint `step` (default: the latest) in `directory`.

    Raises `CheckpointError` if the directory or the step is missing, the JSON items are
    unreadable, the config item differs from its digest, or the format version differs from
    `FORMAT_VERSION`.
    """
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoint directory {directory!r}: it "
                              + ("is a file" if os.path.exists(directory) else "does not exist"))
    found = steps(directory)
    if not found:
        tmp = sorted(n for n in os.listdir(directory) if ".orbax-checkpoint-tmp" in n)
        hint = (f" (only unfinished saves: {tmp}; the run was stopped during its first save)"
                if tmp else "")
        raise CheckpointError(f"no checkpoint in {directory!r}: no committed step directory "
                              f"such as {os.path.join(directory, '50')}{hint}")
    if step is None:
        step = found[-1]
    elif step not in found:
        raise CheckpointError(f"no checkpoint step {step} in {directory!r}; steps: {list(found)}")
    where = f"checkpoint {os.path.join(directory, str(step))}"
    _silence_orphaned_callbacks()
    try:
        path = _step_path(directory, step)
        meta, raw = _read_json(path / "meta"), _read_json(path / "config")
    except Exception as e:  # orbax raises several types for missing or garbled files
        raise CheckpointError(f"{where} is unreadable (config or meta item): {_why(e)}") from e
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{where} has format_version {version!r}; this distillax reads "
                              f"format_version {FORMAT_VERSION} (use the distillax release that "
                              "wrote it)")
    stored = meta.get("config_sha256")
    if stored is not None and stored != _config_digest(raw):
        raise CheckpointError(f"{where} (step {step}) is corrupt: its config item differs from "
                              f"the {DIGEST} digest taken at save; its files changed on disk")
    # Saved before the central policy's schedule had a field of its own: it followed anneal_lr
    raw = {"anneal_central_lr": raw.get("anneal_lr", True), **raw}
    try:
        config = Config.from_dict(raw)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{where} holds a config this distillax cannot read: {e}") from e
    return RunInfo(directory, step, found, config, meta)


def check_resume(info: RunInfo, config: Config) -> None:
    """Raise `CheckpointError` listing every field where `config` differs from the stored one,
    except those in `RESUME_MAY_CHANGE`."""
    diffs = []
    for f in dataclasses.fields(Config):
        old, new = getattr(info.config, f.name), getattr(config, f.name)
        if f.name not in RESUME_MAY_CHANGE and old != new:
            diffs.append(f"{f.name}: checkpoint {old!r}, given {new!r}")
    if diffs:
        raise CheckpointError(
            f"cannot resume {info.directory!r} (step {info.step}) with a different config: "
            + "; ".join(diffs) + f". Only these may change on resume: {list(RESUME_MAY_CHANGE)}")


def restore_train_state(info: RunInfo, like: Any) -> Any:
    """The full train state of checkpoint `info.step`, laid out like `like`.

    `like` is a state of the same structure (a fresh `TrainState` placed on the current mesh):
    its leaves give shapes, dtypes and shardings, never values. Every array is checked against
    its digest (`verify`). Raises `CheckpointError` if the arrays are missing, corrupt or of
    other shapes.
    """
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          like)
    where = f"checkpoint {os.path.join(info.directory, str(info.step))}"
    others = [s for s in info.steps if s != info.step]
    hint = f"; other checkpoints: steps {others} (--resume-step)" if others else ""
    _silence_orphaned_callbacks()
    try:
        with ocp.StandardCheckpointer() as ckptr:
            state = ckptr.restore(_step_path(info.directory, info.step) / "state", target)
    except Exception as e:
        raise CheckpointError(f"{where} could not be restored (missing or corrupt arrays, or "
                              f"a state of another structure): {_why(e)}{hint}") from e
    verify(state, info, hint)
    if parallel.host_iteration(state) != info.step:
        raise CheckpointError(f"{where} is inconsistent: its state is at iteration "
                              f"{parallel.host_iteration(state)}, its step is {info.step}")
    return state


def run_index(info: RunInfo, seed: int | None, member: int | None) -> int | None:
    """The run r = member * S + seed of a checkpoint holding R = K x S runs stacked (None for a
    single run). `seed` is needed when S > 1, `member` when the config sweeps (K > 1)."""
    where = f"checkpoint {os.path.join(info.directory, str(info.step))}"
    S, K = info.config.seeds, len(info.config.members)
    for name, value, n, what in (("seed", seed, S, f"{S} seeds (config seeds = {S})"),
                                 ("member", member, K, f"{K} sweep members")):
        if n > 1 and (value is None or isinstance(value, bool) or not 0 <= value < n):
            raise CheckpointError(f"{where} holds {what} stacked; pick one with {name} = "
                                  f"0..{n - 1} (got {value!r})")
        if n == 1 and value not in (None, 0):
            raise CheckpointError(f"{where} holds one {name}; got {name} = {value!r}")
    return None if S * K == 1 else (member or 0) * S + (seed or 0)


def restore_policies(directory: str, step: int | None = None, seed: int | None = None,
                     member: int | None = None) -> tuple[RunInfo, Policies]:
    """Parameters, normalisers, partition and coefficients of a checkpoint, on the first
    local device.

    Only these subtrees are read (orbax partial restore), with shapes from the checkpoint's
    metadata, so evaluation needs no optimizer or env structure; each array read is checked
    against its digest (`verify`). A checkpoint of several runs (config `seeds` S > 1, or a
    sweep of K members) stores every leaf as `[R, ...]`: `seed` and `member` pick one
    (`run_index`). Raises `CheckpointError`.
    """
    info = read_run(directory, step)
    path = _step_path(directory, info.step) / "state"
    where = f"checkpoint {os.path.join(directory, str(info.step))}"
    run = run_index(info, seed, member)
    wanted = ("params", "teacher_stats", "central_stats", "partition")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    _silence_orphaned_callbacks()
    try:
        with ocp.PyTreeCheckpointer() as ckptr:
            tree = ocp.PyTreeCheckpointHandler().metadata(path).tree
            missing = [k for k in wanted if k not in tree]
            if missing:
                raise CheckpointError(f"{where}: its state has no {missing}")
            if "hparams" in tree:  # (checkpoints from before sweeps have none)
                wanted += ("hparams",)
            target = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                {k: tree[k] for k in wanted})
            r = ckptr.restore(path, args=ocp.args.PyTreeRestore(
                item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
                partial_restore=True))
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{where} could not be restored (missing or corrupt arrays): "
                              f"{_why(e)}") from e
    verify(r, info)  # the subtrees read, before a run is picked: digests are of whole arrays
    if run is not None:
        r = jax.tree.map(lambda x: x[run], r)
    hparams = r.get("hparams")
    return info, Policies(teacher=r["params"]["teacher"], central=r["params"]["central"],
                          teacher_stats=RunningStats(**r["teacher_stats"]),
                          central_stats=RunningStats(**r["central_stats"]),
                          partition=Partition(**r["partition"]), hparams=hparams)


def load(directory: str, step: int | None = None, seed: int | None = None,
         member: int | None = None) -> tuple[Any, Model, Policies]:
    """(`checkpoint.RunInfo`, model, policies) of checkpoint `step` (default: latest); `seed`
    (0..S-1) and `member` (0..K-1) pick one run of a checkpoint of several (config `seeds`
    S > 1, a sweep of K members)."""
    info, policies = restore_policies(directory, step, seed, member)
    return info, build_model(info.config), policies


def load_policy(directory: str, greedy: bool = False, step: int | None = None,
                seed: int | None = None, member: int | None = None) -> Policy:
    """The central policy of a checkpoint as a jitted `policy(obs, context, key) -> action`.

    `obs [..., obs_dim]` is the raw environment observation (the stored normaliser is applied
    inside), `context [..., d]` the context vector, `key` a PRNG key (unused when `greedy`,
    which takes the distribution's mode). Leading axes are batch axes, including none.
    A multi-seed checkpoint needs `seed`, the index s of the run (of config seed + s); a
    sweep's needs `member`, the index k of its member (`Config.members`).
    A recurrent central policy (`central_memory`; for `ppo`, `teacher_memory`) carries a
    state instead: `policy(obs, context, key, state) -> (action, state)`, from
    `policy.initial_state(batch)` at each episode's start (`policy.recurrent` says which).
    Raises `checkpoint.CheckpointError` if the checkpoint is missing, unreadable or corrupt.
    """
    info, model, policies = load(directory, step, seed, member)
    fresh = initial_memory(model, 1, central=True)  # the acting policy's, or None
    size = 0 if fresh is None else fresh.shape[-1]
    if size:
        policy = _recurrent_policy(model, policies, greedy, size)
    else:
        jitted = jax.jit(central_policy(model, policies, greedy))

        def policy(obs: Any, context: Any, key: jax.Array) -> jax.Array:
            return jitted(jnp.asarray(obs, jnp.float32), jnp.asarray(context, jnp.float32),
                          key)

    policy.recurrent = bool(size)  # type: ignore[attr-defined]
    policy.config = info.config  # type: ignore[attr-defined]  # what the policy was trained with
    policy.step = info.step  # type: ignore[attr-defined]
    return policy


def _recurrent_policy(model: Any, policies: Policies, greedy: bool, size: int) -> Policy:
    """`load_policy`'s policy of a recurrent central policy: `policy(obs [..., obs], context
    [..., d], key, state [..., S]) -> (action [...], state')`, with
    `policy.initial_state(batch=())`, the zeros `[*batch, S]` a fresh episode starts from (pass
    it again where an episode ends: the training resets there too)."""
    act = jax.jit(recurrent_acts(central_step(model, policies), greedy))

    def policy(obs: Any, context: Any, key: jax.Array, state: Any) -> tuple[jax.Array, Any]:
        obs, context = jnp.asarray(obs, jnp.float32), jnp.asarray(context, jnp.float32)
        lead = obs.shape[:-1]
        action, state = act(obs.reshape(-1, obs.shape[-1]),
                            context.reshape(-1, context.shape[-1]), key,
                            jnp.asarray(state, jnp.float32).reshape(-1, size))
        return action.reshape(lead + action.shape[1:]), state.reshape(lead + (size,))

    policy.initial_state = lambda batch=(): jnp.zeros((*tuple(batch), size))  # type: ignore[attr-defined]
    return policy


class Saver:
    """Writes a run's checkpoints into `directory`: asynchronously, keeping `max_to_keep`.

    Create it only once the run is known to be valid (a fresh run into an empty directory, or
    a resume whose restore succeeded): it removes unfinished saves of a killed run and, past
    `max_to_keep`, the oldest checkpoints. Use it as a context manager (or call `close` on
    every path): a save still being written when the process ends otherwise fails in orbax's
    background threads at interpreter exit, with a screen of their tracebacks.

    In a multi-process run every process calls `save`, `check` and `close` together, and a
    save that failed on any process raises the same `CheckpointError` on every one (`agree`),
    so that all of them stop there with the same message.
    """

    def __init__(self, directory: str, max_to_keep: int):
        self.directory = directory
        self._processes = (_Processes(f"distillax/saver{next(_SAVERS)}")
                           if jax.process_count() > 1 else None)
        self._mngr = ocp.CheckpointManager(
            os.path.abspath(directory), item_names=ITEMS,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=True,
                cleanup_tmp_directories=True, create=True,
                async_options=ocp.AsyncOptions(barrier_sync_fn=self._processes.barrier)
                if self._processes else None))
        _silence_orphaned_callbacks()  # a failed background write leaves them too
        self.failure: BaseException | None = None  # from orbax's logs (`_OrbaxErrorLogs`)
        logging.getLogger("absl").addFilter(_ORBAX_ERRORS)  # orbax logs through absl; once
        _ORBAX_ERRORS.open.append(self)
        self.blocking_s = 0.0  # time `save` held the training loop, summed over saves
        self.digest_s = 0.0  # the part of it spent taking digests
        self.saves = 0
        self._last: int | None = None  # the step of the latest save started
        self._closed = False

    def __enter__(self) -> Saver:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # an error is on its way out: finish the writes quietly, let that error speak
            self._release()
        except CheckpointError:
            pass

    def _failed(self, e: Exception, step: int | None) -> CheckpointError:
        at = f" (step {step})" if step is not None else ""
        # A failed save is never committed (orbax renames its tmp directory only once every
        # item is written, and drops old steps only after that), so the latest step on disk
        # is complete: say which, since that is where the run can continue (a full disk).
        good = max(steps(self.directory), default=None)
        kept = (f"the latest complete checkpoint is step {good} (--resume continues from it)"
                if good is not None else "no checkpoint is complete")
        return CheckpointError(f"saving a checkpoint{at} into {self.directory!r} failed: "
                               f"{_why(e)}; {kept}")

    def _local(self, block: bool) -> tuple[bool, str | None]:
        """This process's latest save: (still being written, why it failed or None); with
        `block`, once its write is finished. The failure names that save's step."""
        failure = self.failure
        if self._last is None:
            return False, None
        if failure is None:
            if not block and self._mngr.is_saving_in_progress():
                return True, None
            try:
                self._mngr.wait_until_finished()
                return False, None
            except Exception as e:
                failure = e
        return False, str(self._failed(failure, self._last))

    def _settle(self, wait: bool, failure: str | None = None) -> None:
        """Raise `CheckpointError` if the latest save failed, or with `failure` (found before a
        save), on any process: the same message on every process. With `wait`, first wait
        until every process has written it (polling together: a process that waited on its
        own write alone would wait for ever on one whose write failed)."""
        gather = self._processes.gather if self._processes else lambda text: [text]
        while True:
            running, mine = self._local(block=wait and self._processes is None)
            running, failure = agree(running, failure or mine, gather)
            if failure:
                if self._processes:  # end the background writes still waiting for the others
                    self._processes.aborted.set()
                raise CheckpointError(failure)
            if not (wait and running):
                return
            time.sleep(0.02)

    def check(self) -> None:
        """Raise `CheckpointError` if the latest save's background write failed (e.g. the disk
        filled up) on any process; returns at once while it is still being written. Called
        after every call of the training loop, so a failed save stops the run there, not at
        the next save."""
        if self._last is not None:  # (the same on every process: saves are collective)
            self._settle(wait=False)

    def save(self, state: Any, config: Config, devices: int) -> bool:
        """Start saving `state` (at step `state.iteration`); returns False if that step exists.

        Returns once the arrays are on the host and their digests taken; the files are written
        in the background. Every process calls it together (a multi-process run gathers the
        arrays split across processes to digest them). Raises `CheckpointError` if an earlier
        background write failed.
        """
        it = parallel.host_iteration(state)
        # Checked here because orbax, when it cannot create the step directory, raises but
        # leaves threads waiting for that directory, which hold the process at exit.
        gone = (None if os.path.isdir(self.directory) else
                f"saving a checkpoint (step {it}) into {self.directory!r} failed: it is no "
                "longer a directory")
        waited = time.perf_counter()
        # Waits for the previous write (orbax's save would, and blame its error on `it`).
        self._settle(wait=True, failure=gone)
        self.blocking_s += time.perf_counter() - waited
        if it in self._mngr.all_steps():  # a run resumed at its last step has nothing new
            return False
        t = time.perf_counter()
        config_dict = config.to_dict()
        meta = {"format_version": FORMAT_VERSION, "iteration": it,
                "env_steps": it * config.steps_per_iteration, "devices": devices,
                "saved_unix_time": time.time(), "jax_version": jax.__version__,
                "orbax_version": _ORBAX_VERSION, "digest": DIGEST,
                "config_sha256": _config_digest(json.loads(json.dumps(config_dict))),
                "digests": digests(state)}
        self.digest_s += time.perf_counter() - t
        try:
            self._mngr.save(it, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config_dict),
                meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as e:  # this save, or an earlier one's background write, failed
            raise self._failed(e, it) from e
        self._last = it
        self.blocking_s += time.perf_counter() - t
        self.saves += 1
        return True

    def close(self) -> float:
        """Wait for pending writes and release the manager; returns the seconds waited.

        Idempotent. Raises `CheckpointError` if a background write failed (the manager is
        released all the same)."""
        if self._closed:
            return 0.0
        t = time.perf_counter()
        try:
            self._settle(wait=True)
        except CheckpointError:
            with contextlib.suppress(CheckpointError):  # (this process's own view of it)
                self._release()
            raise
        self._release()
        return time.perf_counter() - t

    def _release(self) -> None:
        """Release the manager, once: waits for this process's background writes."""
        if self._closed:
            return
        self._closed = True
        try:
            self._mngr.close()
        except Exception as e:
            raise self._failed(e, self._last) from e
        finally:
            _ORBAX_ERRORS.open.remove(self)


def require_empty(directory: str) -> None:
    """A fresh run must not write over another run's checkpoints."""
    found = steps(directory)
    if found:
        raise CheckpointError(f"{directory!r} already holds checkpoints (steps {list(found)}); "
                              f"continue that run with `--resume {directory}`, or choose another "
                              "--checkpoint-dir")


__all__ = ["DIGEST", "FORMAT_VERSION", "ITEMS", "RESUME_MAY_CHANGE", "CheckpointError",
           "Policies", "RunInfo", "Saver", "UnverifiedCheckpointWarning", "check_resume",
           "cli_notes", "digests", "leaf_name", "load", "load_policy", "read_run", "require_empty",
           "restore_policies",
           "restore_train_state", "steps", "verify"]
