"""Checkpoints: an orbax `CheckpointManager` over the full train state, the config and a version.

A run directory DIR is one orbax `CheckpointManager` root; `train` also writes its logs there:

    DIR/config.json  DIR/metrics.jsonl  DIR/results.json  DIR/tensorboard/   (train.py)
    DIR/<iteration>/state/   the whole `TrainState` pytree (orbax StandardSave: params, optimizer
                             states, normalisers, env carry, partition, RNG key, iteration)
    DIR/<iteration>/config/  the resolved `Config` as JSON (orbax JsonSave; the file `metadata`)
    DIR/<iteration>/meta/    {"format_version", "iteration", "env_steps", "devices", ...} (JsonSave)

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

Restoring for training places every array with the shardings of a state built on the current
mesh, so a checkpoint saved with 4 devices restores on 1 (and vice versa). Restoring for
evaluation (`restore_policies`) reads only the parameters, normalisers and partition, with
shapes from the checkpoint's own metadata: it needs the config, not the training code.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from flax import struct

from distillax import parallel
from distillax.config import Config, ConfigError
from distillax.contexts import Partition
from distillax.normalizer import RunningStats

# Bump when the layout of a checkpoint changes (TrainState fields, item names, meta keys) so
# that an old checkpoint fails with a message instead of a deep orbax structure error.
FORMAT_VERSION = 1
ITEMS = ("state", "config", "meta")

# Config fields a resumed run may change: they set how long to run and how to report, never a
# shape, a coefficient or the data. Changing `total_steps` also changes the horizon of the
# learning-rate annealing and of a linear distillation schedule; `num_devices` the device layout
# (the same computation, not bit-for-bit the same float reductions).
RESUME_MAY_CHANGE = ("total_steps", "log_every", "eval_every", "eval_contexts", "checkpoint_dir",
                     "checkpoint_every", "max_to_keep", "num_devices", "tensorboard")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, of another format version, or does not match the
    config it is resumed with. The message names the directory, the step and what differs."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a checkpoint says about its run, read without touching the arrays."""

    directory: str
    step: int  # the checkpoint's step = the iteration it was saved at
    steps: tuple[int, ...]  # every committed step in the directory
    config: Config
    meta: dict[str, Any]


@struct.dataclass
class Policies:
    """The arrays acting needs, restored without optimizer states or env carries."""

    teacher: Any  # teacher params, leaves [P, ...]
    central: Any  # central params
    teacher_stats: RunningStats  # [P, obs]
    central_stats: RunningStats  # [obs]
    partition: Partition


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


def _step_path(directory: str, step: int) -> epath.Path:
    return epath.Path(os.path.abspath(directory)) / str(step)


def _read_json(path: epath.Path) -> dict[str, Any]:
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
        return dict(ckptr.restore(path))


def read_run(directory: str, step: int | None = None) -> RunInfo:
    """Config and metadata of checkpoint `step` (default: the latest) in `directory`.

    Raises `CheckpointError` if the directory or the step is missing, the JSON items are
    unreadable, or the format version differs from `FORMAT_VERSION`.
    """
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoint directory {directory!r}: it does not exist")
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
    its leaves give shapes, dtypes and shardings, never values. Raises `CheckpointError` if the
    arrays are missing, corrupt or of other shapes.
    """
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          like)
    where = f"checkpoint {os.path.join(info.directory, str(info.step))}"
    try:
        with ocp.StandardCheckpointer() as ckptr:
            state = ckptr.restore(_step_path(info.directory, info.step) / "state", target)
    except Exception as e:
        others = [s for s in info.steps if s != info.step]
        hint = f"; other checkpoints: steps {others} (--resume-step)" if others else ""
        raise CheckpointError(f"{where} could not be restored (missing or corrupt arrays, or "
                              f"a state of another structure): {_why(e)}{hint}") from e
    if parallel.host_iteration(state) != info.step:
        raise CheckpointError(f"{where} is inconsistent: its state is at iteration "
                              f"{parallel.host_iteration(state)}, its step is {info.step}")
    return state


def restore_policies(directory: str, step: int | None = None,
                     seed: int | None = None) -> tuple[RunInfo, Policies]:
    """Parameters, normalisers and partition of a checkpoint, on the first local device.

    Only these subtrees are read (orbax partial restore), with shapes from the checkpoint's
    metadata, so evaluation needs no optimizer or env structure. A multi-seed run
    (config `seeds` S > 1) stores every leaf as `[S, ...]`: `seed` (0..S-1) picks one.
    Raises `CheckpointError`.
    """
    info = read_run(directory, step)
    path = _step_path(directory, info.step) / "state"
    where = f"checkpoint {os.path.join(directory, str(info.step))}"
    num_seeds = info.config.seeds
    if num_seeds > 1 and (seed is None or not 0 <= seed < num_seeds):
        raise CheckpointError(f"{where} holds {num_seeds} seeds stacked (config seeds = "
                              f"{num_seeds}); pick one with seed = 0..{num_seeds - 1} "
                              f"(got {seed!r})")
    if num_seeds == 1 and seed not in (None, 0):
        raise CheckpointError(f"{where} holds one seed; got seed = {seed!r}")
    wanted = ("params", "teacher_stats", "central_stats", "partition")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    try:
        with ocp.PyTreeCheckpointer() as ckptr:
            tree = ocp.PyTreeCheckpointHandler().metadata(path).tree
            missing = [k for k in wanted if k not in tree]
            if missing:
                raise CheckpointError(f"{where}: its state has no {missing}")
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
    if num_seeds > 1:
        r = jax.tree.map(lambda x: x[seed], r)
    return info, Policies(r["params"]["teacher"], r["params"]["central"],
                          RunningStats(**r["teacher_stats"]), RunningStats(**r["central_stats"]),
                          Partition(**r["partition"]))


class Saver:
    """Writes a run's checkpoints into `directory`: asynchronously, keeping `max_to_keep`.

    Create it only once the run is known to be valid (a fresh run into an empty directory, or
    a resume whose restore succeeded): it removes unfinished saves of a killed run and, past
    `max_to_keep`, the oldest checkpoints.
    """

    def __init__(self, directory: str, max_to_keep: int):
        self.directory = directory
        self._mngr = ocp.CheckpointManager(
            os.path.abspath(directory), item_names=ITEMS,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=True,
                cleanup_tmp_directories=True, create=True))
        self.blocking_s = 0.0  # time `save` held the training loop, summed over saves
        self.saves = 0

    def save(self, state: Any, config: Config, devices: int) -> bool:
        """Start saving `state` (at step `state.iteration`); returns False if that step exists.

        Returns once the arrays are on the host; the files are written in the background.
        """
        it = parallel.host_iteration(state)
        if it in self._mngr.all_steps():  # a run resumed at its last step has nothing new
            return False
        meta = {"format_version": FORMAT_VERSION, "iteration": it,
                "env_steps": it * config.steps_per_iteration, "devices": devices,
                "saved_unix_time": time.time(), "jax_version": jax.__version__,
                "orbax_version": getattr(ocp, "__version__", "unknown")}
        t = time.perf_counter()
        self._mngr.save(it, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config.to_dict()),
            meta=ocp.args.JsonSave(meta)), force=True)
        self.blocking_s += time.perf_counter() - t
        self.saves += 1
        return True

    def close(self) -> float:
        """Wait for pending writes and release the manager; returns the seconds waited."""
        t = time.perf_counter()
        self._mngr.wait_until_finished()
        self._mngr.close()
        return time.perf_counter() - t


def require_empty(directory: str) -> None:
    """A fresh run must not write over another run's checkpoints."""
    found = steps(directory)
    if found:
        raise CheckpointError(f"{directory!r} already holds checkpoints (steps {list(found)}); "
                              f"continue that run with `--resume {directory}`, or choose another "
                              "--checkpoint-dir")


__all__ = ["FORMAT_VERSION", "ITEMS", "RESUME_MAY_CHANGE", "CheckpointError", "RunInfo",
           "Policies", "Saver", "check_resume", "read_run", "require_empty",
           "restore_policies", "restore_train_state", "steps"]
