"""Data parallelism: a 1-D `Mesh` with axis "data", `shard_map` over it, and multi-process set-up.

Envs (the `B` axis of every `[P, B, ...]` env leaf, or `[S, P, B, ...]` with a seed axis) are
split across devices; parameters, optimizer states and everything else are replicated. With
`jax.distributed` initialised (`initialize_distributed`) the mesh spans every device of every
process, and `put` builds global arrays from the host data every process holds alike.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as PS

from distillax.config import ConfigError

AXIS = "data"


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, auto: bool = False) -> None:
    """Join a multi-process JAX program: call once, before any other JAX call.

    Either all of `coordinator` ("host:port" of process 0), `num_processes` and `process_id`,
    or `auto=True` to let JAX read them from the cluster environment (SLURM, Open MPI, TPU
    pods, ...). On CPU the cross-process collectives use gloo, which must be chosen before
    initialising.
    """
    check_distributed(coordinator, num_processes, process_id, auto)
    # Needed for CPU collectives across processes; GPU/TPU backends do not read it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if auto:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=num_processes, process_id=process_id)


def check_distributed(coordinator: str | None, num_processes: int | None,
                      process_id: int | None, auto: bool = False) -> None:
    """Raise `ConfigError` (in the config fields' style, naming the flag) for a multi-process
    set-up that `jax.distributed` would reject from deep inside (a coordinator without a port
    ends in an IndexError there) or that would wait for processes that never come: each
    value, then the combination. All None and not `auto`: a single-process run, valid."""

    def fail(flag: str, value: Any, valid: str) -> NoReturn:
        raise ConfigError(f"{flag} = {value!r} is invalid: {valid}")

    if coordinator is not None:
        host, sep, port = coordinator.rpartition(":")
        if not (sep and host.strip() and port.isascii() and port.isdigit()
                and 1 <= int(port) <= 65535):
            fail("--coordinator", coordinator, "HOST:PORT of process 0's coordination service, "
                                               "a port in 1..65535, e.g. 10.0.0.1:1234")
    if num_processes is not None and num_processes < 1:
        fail("--num-processes", num_processes, "an integer >= 1")
    explicit = (coordinator, num_processes, process_id)
    given = [v is not None for v in explicit]
    if auto and any(given):
        raise ConfigError("--distributed auto takes the coordinator, process count and id from "
                          "the cluster environment; pass none of --coordinator, --num-processes "
                          "and --process-id with it")
    if not auto and any(given) and not all(given):
        raise ConfigError("multi-process JAX needs --coordinator, --num-processes and "
                          f"--process-id together (got {explicit}), or --distributed auto")
    if process_id is not None and not 0 <= process_id < num_processes:
        fail("--process-id", process_id, f"0..{num_processes - 1} (--num-processes = "
                                         f"{num_processes})")


def distributed_flags(parser: argparse.ArgumentParser) -> None:
    """Add the multi-process flags to a command line (`initialize_from_argv` reads them)."""
    g = parser.add_argument_group(
        "multi-process (jax.distributed; every process runs the same command; process 0 "
        "writes logs and results, every process its shards of a checkpoint)")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                   help="address of process 0's coordination service")
    g.add_argument("--num-processes", metavar="N", type=int, default=None,
                   help="processes in the program, each with its local devices")
    g.add_argument("--process-id", metavar="I", type=int, default=None,
                   help="this process's index, 0..N-1")
    g.add_argument("--distributed", choices=("auto",), default=None,
                   help="auto: take coordinator, process count and id from the cluster "
                        "environment where JAX detects one (SLURM, Open MPI, Cloud TPU)")


def initialize_from_argv(argv: list[str]) -> bool:
    """Initialise `jax.distributed` from the flags of `distributed_flags` in `argv`, if any
    are given (other flags are ignored); returns whether this is a multi-process run.

    Idempotent. Must run before the JAX backend starts: entry points call it before their
    imports (gymnax starts the backend when imported). A bad combination exits with status 2.
    """
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    distributed_flags(parser)
    try:
        opts, _ = parser.parse_known_args(argv)
    except argparse.ArgumentError:
        return False  # the command line's own parser reports it, with its other flags
    explicit = (opts.coordinator, opts.num_processes, opts.process_id)
    if not opts.distributed and all(v is None for v in explicit):
        return False
    if jax.distributed.is_initialized():
        return True
    try:
        initialize_distributed(*explicit, auto=opts.distributed == "auto")
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return True


def is_primary() -> bool:
    """Process 0 writes logs, results and checkpoint metadata; the others only compute."""
    return jax.process_index() == 0


def make_mesh(num_devices: int = 0) -> Mesh:
    """A mesh over the first `num_devices` devices of all processes (0: all of them)."""
    devices = jax.devices()
    n = num_devices or len(devices)
    if n > len(devices):
        raise ConfigError(f"config field `num_devices` = {n} is invalid: only {len(devices)} "
                          "devices are visible (0 = all)")
    if jax.process_count() > 1 and n != len(devices):
        raise ConfigError(f"config field `num_devices` = {n} is invalid: a multi-process run "
                          f"uses all {len(devices)} devices of its processes (0)")
    return Mesh(np.asarray(devices[:n]), (AXIS,))


def specs(state: Any, env_field: str = "env", env_axis: int = 1) -> Any:
    """PartitionSpecs for a state dataclass: its `env_field` split on `env_axis` (the env axis
    B: 1 for `[P, B, ...]` leaves, 2 with a leading seed axis), everything else replicated."""
    rep = jax.tree.map(lambda _: PS(), state)
    split = PS(*([None] * env_axis + [AXIS]))
    env = jax.tree.map(lambda _: split, getattr(state, env_field))
    return rep.replace(**{env_field: env})


def put(state: Any, mesh: Mesh, state_specs: Any) -> Any:
    """Place a host/1-device state onto the mesh with the given specs.

    Every process must hold the same values (a state built deterministically from a key):
    each process copies only the slices its own devices hold into one global array.
    """

    def one(x, spec):
        sharding = NamedSharding(mesh, spec)
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, state, state_specs)


def shard(fn: Callable[..., tuple[Any, Any]], mesh: Mesh, state_specs: Any,
          extra_args: int = 0) -> Callable:
    """jit(shard_map(fn)) for `fn(state, *args) -> (state, metrics)`; the `extra_args` args
    and the metrics are replicated.

    The state argument is donated: its buffers are reused for the new state.
    """
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=(state_specs,) + (PS(),) * extra_args,
                           out_specs=(state_specs, PS()))
    return jax.jit(mapped, donate_argnums=0)


def host_local(tree: Any) -> Any:
    """The replicated leaves of a (possibly multi-process) tree as host numpy arrays; leaves
    split across devices become None. Every process can read what every device agrees on."""

    def one(x):
        if isinstance(x, jax.Array) and not x.sharding.is_fully_replicated:
            return None
        if isinstance(x, jax.Array):
            return np.asarray(x.addressable_shards[0].data)
        return np.asarray(x)

    return jax.tree.map(one, tree)


def host_iteration(state: Any) -> int:
    """The iteration a train state stands at, read on the host (all seeds of a stacked
    multi-seed state move together, so their `[S]` iterations are equal)."""
    return int(np.max(host_local(state.iteration)))


def assert_replicated(tree: Any) -> None:
    """Raise if a replicated array's copies on different (local) devices differ."""
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        if not x.sharding.is_fully_replicated:
            continue
        shards = [np.asarray(s.data) for s in x.addressable_shards]
        for s in shards[1:]:
            if not np.array_equal(s, shards[0], equal_nan=True):
                raise AssertionError(f"{jax.tree_util.keystr(path)} differs across devices")
