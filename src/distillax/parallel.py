"""Data parallelism: a 1-D `Mesh` with axis "data", and `shard_map` over it.

Envs (the `B` axis of every `[P, B, ...]` env leaf) are split across devices; parameters,
optimizer states and everything else are replicated. With `jax.distributed` initialised
the mesh spans every device of every process.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as PS

AXIS = "data"


def make_mesh(num_devices: int = 0) -> Mesh:
    """A mesh over the first `num_devices` devices (0: all of them)."""
    devices = jax.devices()
    n = num_devices or len(devices)
    if n > len(devices):
        raise ValueError(f"num_devices = {n} but only {len(devices)} devices are visible")
    return Mesh(np.asarray(devices[:n]), (AXIS,))


def specs(state: Any, env_field: str = "env") -> Any:
    """PartitionSpecs for a state dataclass: its `env_field` split on axis 1, rest replicated."""
    rep = jax.tree.map(lambda _: PS(), state)
    env = jax.tree.map(lambda _: PS(None, AXIS), getattr(state, env_field))
    return rep.replace(**{env_field: env})


def put(state: Any, mesh: Mesh, state_specs: Any) -> Any:
    """Place a host/1-device state onto the mesh with the given specs."""
    return jax.tree.map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)), state, state_specs)


def shard(fn: Callable[[Any], tuple[Any, Any]], mesh: Mesh, state_specs: Any) -> Callable:
    """jit(shard_map(fn)) for `fn(state) -> (state, metrics)`; metrics are replicated.

    The state argument is donated: its buffers are reused for the new state.
    """
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=(state_specs,), out_specs=(state_specs, PS()))
    return jax.jit(mapped, donate_argnums=0)


def assert_replicated(tree: Any) -> None:
    """Raise if a replicated array's copies on different devices differ."""
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
        if not x.sharding.is_fully_replicated:
            continue
        shards = [np.asarray(s.data) for s in x.addressable_shards]
        for s in shards[1:]:
            if not np.array_equal(s, shards[0], equal_nan=True):
                raise AssertionError(f"{jax.tree_util.keystr(path)} differs across devices")
