"""Metric sinks and progress. Only the host writes; nothing here runs under jit.

- `JsonlSink`: one JSON object per report, always (the record of a run; the evaluator's
  learning curves read it back with `read_jsonl`).
- `TensorBoardSink`: the same scalars as TensorBoard events (tensorboardX), when asked.
- `WandbSink`: the same scalars to Weights & Biases (the wandb extra), when asked.
- `Progress`: a live bar with ETA on a terminal; plain lines where stdout is not a TTY (CI,
  redirected output), so logs stay greppable.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np


class Note(UserWarning):
    """Something a user should know that changes no result; the command lines print it as
    the one line `note: <message>` (`checkpoint.cli_notes`)."""


def to_python(x: Any) -> Any:
    """Arrays and numpy scalars -> JSON-friendly floats / lists (NaN -> None)."""
    if isinstance(x, dict):
        return {k: to_python(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):  # (ragged ones too: a sweep's (field, values) pairs)
        return [to_python(v) for v in x]
    if isinstance(x, str):
        return x
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


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; a line cut short by a killed writer is skipped."""
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def truncate_jsonl(path: str, last_iteration: int) -> int:
    """Drop the records after `last_iteration` (and any cut-short line); returns how many.

    A resumed run recomputes the iterations after its checkpoint, so their records from the
    killed run would otherwise appear twice. The file is replaced atomically.
    """
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["iteration"] <= last_iteration:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    if len(keep) != len(lines):
        write_atomic(path, "".join(keep))
    return len(lines) - len(keep)


def write_atomic(path: str, data: str | bytes) -> None:
    """Write `data` (text or bytes) to `path` through a temporary file and a rename: a reader
    (or a kill) sees the old file or the new one, never half of one. The temporary file's
    name is unique, so two processes writing the same path do not write into one file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".",
                               prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A record's finite numbers by tag, for the dashboards: a per-partition (or per-run)
    array `[P]` becomes `name/0 ... name/P-1`, a sweep's `members` list
    `member<k>/teacher_return/<i>`; `iteration` and `env_steps` are the axes, not scalars."""
    out: dict[str, float] = {}

    def put(tag: str, value: Any) -> None:
        a = np.asarray(np.nan if value is None else value, dtype=np.float64)
        for i, v in ([("", a)] if a.ndim == 0 else [(f"/{i}", v) for i, v in enumerate(a)]):
            if np.isfinite(v):
                out[tag + i] = float(v)

    for name, value in record.items():
        if name == "members":
            for m in value:
                put(f"member{m['member']}/teacher_return", m["teacher_return"])
        elif name not in ("iteration", "env_steps"):
            put(name, value)
    return out


class TensorBoardSink:
    """Each record's numbers as TensorBoard scalars at step `env_steps`; a per-partition
    array `[P]` becomes `name/0 ... name/P-1`.

    `purge_step` (a resumed run's first env step) makes TensorBoard drop the events a killed
    run wrote after its last checkpoint, which the resumed run writes again.
    """

    def __init__(self, logdir: str, purge_step: int | None = None):
        from tensorboardX import SummaryWriter  # imported only when TensorBoard is asked for

        # The suffix keeps a resumed run's file apart from one written in the same second.
        self._w = SummaryWriter(logdir=logdir, purge_step=purge_step,
                                filename_suffix=f".from{purge_step or 0}")

    def write(self, record: dict[str, Any]) -> None:
        step = int(record["env_steps"])
        for tag, v in scalars(record).items():
            self._w.add_scalar(tag, v, step)
        self._w.flush()

    def close(self) -> None:
        self._w.close()


class WandbSink:
    """The records' scalars (`scalars`) logged to a Weights & Biases run, against `env_steps`.

    wandb is imported here only (an optional extra). `run_id` continues that run (a resumed
    distillax run passes the id its first process stored); `.id` is the run's id. Records
    carry no explicit wandb step: a resumed run recomputes the iterations after its
    checkpoint, and wandb refuses steps that go back, so their values are logged again at
    the same `env_steps` (the x axis) instead.
    """

    def __init__(self, *, project: str, name: str | None, mode: str, directory: str | None,
                 config: dict[str, Any], run_id: str | None = None):
        import wandb  # imported only when wandb is asked for

        if directory:
            os.makedirs(directory, exist_ok=True)
        self._run = wandb.init(project=project, name=name or None, mode=mode, dir=directory,
                               config=config, id=run_id, resume="allow" if run_id else None)
        self._run.define_metric("env_steps")
        self._run.define_metric("*", step_metric="env_steps")
        self.id: str = self._run.id

    def write(self, record: dict[str, Any]) -> None:
        self._run.log({"env_steps": int(record["env_steps"]), **scalars(record)})

    def close(self) -> None:
        self._run.finish()


def progress_line(record: dict[str, Any], total_iterations: int) -> str:
    rets = " ".join(f"{r:6.1f}" for r in np.atleast_1d(record["teacher_return"]))
    line = (f"iter {record['iteration']:>5}/{total_iterations} | "
            f"{record['env_steps']:>11,} steps | {record['steps_per_s']:>9,.0f} steps/s | "
            f"teacher return [{rets}]")
    if record.get("central_return") is not None:
        line += f" | central held-out return {record['central_return']:6.1f} (greedy)"
    if record.get("kept") is not None:
        line += f", keeps {record['kept']:.2f} of its teachers'"
    return line


def format_duration(seconds: float) -> str:
    """`75.2` -> `1:15`, `3725` -> `1:02:05`."""
    s = int(round(max(seconds, 0.0)))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Reports each record: a one-line bar rewritten in place when `interactive`, else one
    plain line per record through `log`. Both show the ETA.

    The ETA is the remaining iterations at the wall-clock rate since this object was made
    (after compilation), so it includes evaluation and checkpoint time, not compile time.
    """

    def __init__(self, total: int, start: int, log: Callable[[str], None],
                 interactive: bool | None = None, stream: TextIO | None = None):
        self.total, self.start, self.log = total, start, log
        self.stream = stream if stream is not None else sys.stdout
        if interactive is None:
            interactive = log is print and self.stream.isatty()
        self.interactive = interactive
        self._t0 = time.perf_counter()
        self._open = False  # a bar line is on screen without its newline
        self._central: float | None = None  # the last held-out return, shown until the next
        self._kept: float | None = None  # and how much of its teachers' it kept

    def eta(self, iteration: int) -> float | None:
        done = iteration - self.start
        if done <= 0:
            return None
        return (time.perf_counter() - self._t0) / done * (self.total - iteration)

    def update(self, record: dict[str, Any]) -> None:
        it = int(record["iteration"])
        eta = self.eta(it)
        eta_s = "--:--" if eta is None else format_duration(eta)
        if not self.interactive:
            self.log(f"{progress_line(record, self.total)} | ETA {eta_s}")
            return
        width = shutil.get_terminal_size((100, 20)).columns
        frac = it / max(self.total, 1)
        bar_w = 20
        bar = "#" * int(frac * bar_w) + "-" * (bar_w - int(frac * bar_w))
        rets = " ".join(f"{r:.0f}" for r in np.atleast_1d(record["teacher_return"]))
        text = (f"[{bar}] {100 * frac:3.0f}% {it}/{self.total} | "
                f"{record['steps_per_s']:,.0f} steps/s | ETA {eta_s} | teachers {rets}")
        if record.get("central_return") is not None:
            self._central = float(record["central_return"])
            self._kept = record.get("kept")
        if self._central is not None:
            text += f" | central {self._central:.1f}"
        if self._kept is not None:
            text += f" (keeps {self._kept:.2f})"
        self.stream.write("\r" + text[: width - 1].ljust(width - 1))
        self.stream.flush()
        self._open = True

    def close(self) -> None:
        """End the bar's line, so later messages start on their own line."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
