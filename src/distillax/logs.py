"""Metric sinks and the progress line. Only the host writes; nothing here runs under jit."""

from __future__ import annotations

import json
import math
import os
from typing import Any, TextIO

import numpy as np


def to_python(x: Any) -> Any:
    """Arrays and numpy scalars -> JSON-friendly floats / lists (NaN -> None)."""
    if isinstance(x, dict):
        return {k: to_python(v) for k, v in x.items()}
    a = np.asarray(x)
    if a.ndim == 0:
        v = a.item()
        return None if isinstance(v, float) and not math.isfinite(v) else v
    return [to_python(v) for v in a]


class JsonlSink:
    """Appends one JSON object per line; flushed each write so a crash loses nothing."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._f: TextIO = open(path, "a")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(to_python(record)) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def progress_line(record: dict[str, Any], total_iterations: int) -> str:
    rets = " ".join(f"{r:6.1f}" for r in np.atleast_1d(record["teacher_return"]))
    line = (f"iter {record['iteration']:>5}/{total_iterations} | "
            f"{record['env_steps']:>11,} steps | {record['steps_per_s']:>9,.0f} steps/s | "
            f"teacher return [{rets}]")
    if record.get("central_return") is not None:
        line += f" | central held-out return {record['central_return']:6.1f} (greedy)"
    return line
