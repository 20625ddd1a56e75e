"""The library run: `train(config)`, `resume(directory)` and their `Summary`.

    from distillax import Config, train, resume
    state, summary = train(Config(task="cartpole", method="central", checkpoint_dir="runs/a"))
    state, summary = resume("runs/a", total_steps=6_000_000)

A run compiles one training program and one evaluation program, ahead of time and side by
side, through JAX's persistent compilation cache (on by default, in the user's cache
directory); both are also stored whole in its `programs/` (`distillax.programs`), so a
second run of the same config loads them without tracing, lowering or compiling. The loop
runs up to `config.report_every` iterations per host call; the last, shorter call runs in
the same program. Calls end at multiples of it counted from iteration 0 (and at the end, or at
`stop_after`), checkpoints are taken only between calls, and the RNG key lives in the state:
so a resumed run executes the same compiled steps on the same state as an uninterrupted one
and reproduces it bit for bit (on CPU, with the same device count). A non-finite reward, loss
term, gradient or parameter (flagged inside the jitted step) stops the run at the end of its
call with `NumericalError`, without recording or saving the faulty state.

With `seeds = S > 1` the state carries a leading seed axis (run s is the run of seed
`seed + s`); records and results give the mean over seeds under the usual names, plus
`<name>_seeds` and a 95% Student-t interval `<name>_ci95`. In a multi-process run every
process runs this loop on its share of the envs; only process 0 logs and writes files other
than its checkpoint shards.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from distillax import cache, limits, logs, parallel, programs
from distillax.config import Config, ConfigError, validate
from distillax.evaluation import (
    CENTRAL,
    TEACHERS,
    Evaluator,
    by_member,
    cell_means,
    fit_fields,
    make_evaluator,
    mean_ci95,
    report,
    run_policies,
)
from distillax.model import Model, build_model
from distillax.paths import check_output_dir, removing_unused
from distillax.reporting import final_lines, sweep_files, write_json
from distillax.trainer import (
    IterationMetrics,
    NumericalError,
    Runner,
    TrainState,
    init_run_state,
    make_runner,
    nonfinite_report,
)

# Held-out evaluation during training costs at most this share of the training env steps
# between two evaluations, when `eval_every` is 0 (auto).
EVAL_SHARE = 0.25
# With `checkpoint_every` 0 (auto), a checkpoint is also taken at the end of the first call
# that ends this long after the last one (a checkpoint holds no result, so when one is taken
# changes nothing in the run).
AUTO_CHECKPOINT_S = 600.0


@dataclasses.dataclass(kw_only=True)
class Summary:
    """What a run reports: per-report records and the final held-out evaluation.

    `final` is empty when the run stopped before its last iteration (`stop_after`, a signal).
    Times are those of this process (a resumed run counts from its restore), in seconds:
    `startup_s` from the call to the start of compilation (validation, model, initial state,
    restore), `compile_s` the training and evaluation programs (compiled side by side),
    `train_s` the training calls, `eval_s` held-out evaluation (periodic and final).
    """

    history: list[dict[str, Any]]
    final: dict[str, Any]
    compile_s: float
    train_s: float
    steps_per_s: float  # env steps of all seeds per second of training calls
    start_iteration: int = 0  # > 0 for a resumed run
    iteration: int = 0  # where the run stands now
    checkpoints: int = 0  # checkpoints saved by this process
    checkpoint_blocking_s: float = 0.0  # time saves held the loop, in total
    checkpoint_wait_s: float = 0.0  # time spent at exit waiting for background writes
    startup_s: float = 0.0
    eval_s: float = 0.0
    wall_s: float = 0.0  # the whole call


def eval_interval(config: Config, max_episode_steps: int) -> int:
    """Iterations between held-out evaluations: `eval_every`, or for 0 the fewest iterations
    whose training env steps are at least 1/EVAL_SHARE times one evaluation's at most
    (`eval_contexts` episodes of up to `max_episode_steps` steps each, for every seed)."""
    if config.eval_every:
        return config.eval_every
    eval_steps = config.eval_contexts * max_episode_steps
    return max(1, math.ceil(eval_steps / (EVAL_SHARE * config.steps_per_iteration)))


def _record(metrics: IterationMetrics, row: int, iteration: int, config: Config,
            steps_per_s: float) -> dict[str, Any]:
    """The report of iteration `row` of a call (its last one). With several runs (seeds, sweep
    members) every metric is the mean over runs (so the record keeps its single-run shape),
    `<name>_seeds` holds the value of each run r = k S + s (averaged over partitions) for the
    return, loss and distillation, and a sweep adds `members`: each member's teacher return
    over its seeds.

    `distill_loss` is the distillation divergence's value (a KL, an NLL or an MSE: config
    `divergence`); `couple` the coupling term alpha multiplies, whose meaning is the method's
    (`methods.MethodSpec.coupling.meaning`, 0 for a method without one)."""
    last = jax.tree.map(lambda x: np.asarray(x[row]), parallel.host_local(metrics))
    u = last.update
    per_seed: dict[str, Any] = {}
    if config.num_runs > 1:
        per_seed = {"teacher_return_seeds": last.teacher_return.mean(axis=1),
                    "loss_seeds": u.loss, "distill_loss_seeds": u.distill.mean(axis=1)}
        if config.sweep:
            per_seed["members"] = [
                {"member": k, "teacher_return": np.mean(np.stack(g), axis=0)}
                for k, g in enumerate(by_member(config, list(last.teacher_return)))]
        last = jax.tree.map(lambda x: x.mean(axis=0), last)
        u = last.update
    return {
        "iteration": iteration,
        "env_steps": iteration * config.steps_per_iteration,
        "steps_per_s": steps_per_s,
        "teacher_return": last.teacher_return,
        "loss": u.loss,
        "distill_loss": u.distill,
        "feature_loss": u.feature,
        "couple": u.couple,
        "central_log_ratio": u.central_log_ratio,
        "entropy": u.teacher.entropy,
        "value_loss": u.teacher.value,
        "approx_kl": u.teacher.approx_kl,
        "clip_frac": u.teacher.clip_frac,
        **per_seed,
    }


class _StopRequest:
    """While active, SIGINT / SIGTERM ask the loop to stop at the end of its running call
    (after a checkpoint) instead of killing it mid-step; a second Ctrl-C aborts at once."""

    def __init__(self, enabled: bool, log: Callable[[str], None]):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.log = log
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the second Ctrl-C aborts
        self.log(f"\n{signal.Signals(signum).name}: stopping after the running iterations "
                 "(with a checkpoint); Ctrl-C again to abort")

    def __enter__(self) -> _StopRequest:
        if self.enabled:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def train(config: Config, log: Callable[[str], None] = print, *, stop_after: int | None = None,
          handle_signals: bool = False,
          compile_cache: str | None = "default") -> tuple[TrainState, Summary]:
    """Train `config` to its env-step budget; returns the final state and a summary.

    With `config.checkpoint_dir` set, checkpoints go there (every `config.save_every`
    iterations and at the end), together with config.json, metrics.jsonl and results.json;
    the directory must not already hold checkpoints (continue those with `resume`).
    `stop_after`: stop once the run reaches this iteration, with a checkpoint.
    `compile_cache`: the persistent compilation cache's directory ("default":
    `cache.default_cache_dir()`; None: JAX's own settings, by default no cache).
    """
    return _run(config, log, None, stop_after, handle_signals, compile_cache)


def resume(directory: str, log: Callable[[str], None] = print, *, step: int | None = None,
           stop_after: int | None = None, handle_signals: bool = False,
           compile_cache: str | None = "default", **overrides: Any) -> tuple[TrainState, Summary]:
    """Continue the run in `directory` from checkpoint `step` (default: the latest).

    The run keeps its stored config; `overrides` may change the fields in
    `checkpoint.RESUME_MAY_CHANGE` (e.g. `total_steps` to train longer). Raises
    `CheckpointError` before writing anything if the checkpoint is missing, unreadable,
    corrupt, of another format version, or the overrides change any other field.
    """
    from distillax import checkpoint

    info = checkpoint.read_run(directory, step)
    given_dir = overrides.pop("checkpoint_dir", None)
    if given_dir and os.path.abspath(given_dir) != os.path.abspath(directory):
        raise checkpoint.CheckpointError(
            f"a resumed run writes into its own directory {directory!r}; got checkpoint_dir = "
            f"{given_dir!r} as well")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Config)})
    if unknown:
        raise ConfigError(f"unknown config field(s) {unknown} to override on resume")
    config = info.config.replace(checkpoint_dir=directory, **overrides)
    checkpoint.check_resume(info, config)
    return _run(config, log, info, stop_after, handle_signals, compile_cache)


def _silent(_: str) -> None:
    """The log of processes other than 0."""


def _fault_message(fault: str, directory: str) -> str:
    """What a user reads when the numerical guard stops a run: the fault, and what is kept."""
    from distillax import checkpoint

    good = max(checkpoint.steps(directory), default=None) if directory else None
    kept = (f"the last good checkpoint, {os.path.join(directory, str(good))} (iteration "
            f"{good}), is untouched" if good is not None else "no checkpoint was saved")
    return (f"training stopped: {fault}. The faulty state was not saved; {kept}. "
            + ("Resuming it would repeat the same computation: " if good is not None else "")
            + "start a new run with a smaller learning_rate / central_learning_rate / "
            "max_grad_norm, or fix the task's rewards")


class Outputs:
    """The files of one run, opened together and closed together on every path (an
    `ExitStack`): config.json, the metrics sinks and the checkpoint saver in
    `config.checkpoint_dir`, and the progress display. Only process 0 writes files other than
    its checkpoint shards."""

    def __init__(self, config: Config, restore: Any, start: int, log: Callable[[str], None],
                 primary: bool):
        self.config, self.log, self.primary = config, log, primary
        self.sinks: list[Any] = []
        self.saver = None
        self.dropped = 0
        self._stack = contextlib.ExitStack()
        directory = config.checkpoint_dir
        try:
            if directory:
                self._open_files(directory, restore, start, primary)
            if config.wandb and primary:
                self._open_wandb(directory)
            self.progress = logs.Progress(config.num_iterations, start, log)
            self._stack.callback(self.progress.close)
        except BaseException:
            self._stack.close()
            raise

    def _open_files(self, directory: str, restore: Any, start: int, primary: bool) -> None:
        from distillax import checkpoint

        c = self.config
        if primary:
            os.makedirs(directory, exist_ok=True)
            write_json(os.path.join(directory, "config.json"), c.to_dict())
            metrics_path = os.path.join(directory, "metrics.jsonl")
            if restore is None:
                open(metrics_path, "w").close()  # a run that never checkpointed starts over
            else:
                self.dropped = logs.truncate_jsonl(metrics_path, start)
            self.sinks.append(self._stack.enter_context(
                contextlib.closing(logs.JsonlSink(metrics_path))))
            if c.tensorboard:
                tb = logs.TensorBoardSink(os.path.join(directory, "tensorboard"),
                                          purge_step=start * c.steps_per_iteration
                                          if restore is not None else None)
                self.sinks.append(self._stack.enter_context(contextlib.closing(tb)))
        self.saver = self._stack.enter_context(checkpoint.Saver(directory, c.max_to_keep))

    def _open_wandb(self, directory: str) -> None:
        """The wandb sink; its run id is kept in `directory/wandb.json`, so a resumed run
        (which reads it back) continues the same wandb run."""
        c = self.config
        id_path = os.path.join(directory, "wandb.json") if directory else None
        run_id = None
        if id_path and os.path.exists(id_path):
            with open(id_path) as f:
                run_id = json.load(f).get("id")
        sink = logs.WandbSink(project=c.wandb_project, mode=c.wandb_mode,
                              name=c.wandb_name or (os.path.basename(os.path.normpath(directory))
                                                    if directory else None),
                              directory=directory or None,  # wandb adds its wandb/ folder
                              config=c.to_dict(), run_id=run_id)
        self.sinks.append(self._stack.enter_context(contextlib.closing(sink)))
        if id_path:
            write_json(id_path, {"id": sink.id})

    def write(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.write(record)
        self.progress.update(record)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)


def _compile(runner: Runner, state: TrainState, evaluator: Evaluator | None, model: Model,
             store: programs.Store | None) -> tuple[Runner, float, int]:
    """The training and evaluation programs, loaded from the program `store`
    (`programs`) or compiled side by side (XLA compiles without the GIL, so the two share
    the cores); returns the compiled runner, the seconds taken and how many were loaded.
    `evaluator` None: this segment of the run evaluates nothing, so it is not compiled."""
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        evaluating = (pool.submit(evaluator.compile, run_policies(model, state), store)
                      if evaluator is not None else None)
        runner, loaded = runner.compile(state, store)
        if evaluating is not None:
            loaded += evaluating.result()
    return runner, time.perf_counter() - t, int(loaded)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """What a run will do, decided and checked before anything is built."""

    config: Config  # validated
    restore: Any  # the checkpoint.RunInfo to resume from, or None
    stop_after: int | None
    store: programs.Store | None  # the program store (`programs`), None without a cache
    t_call: float  # when the call began (`time.perf_counter`)


def _plan(config: Config, restore: Any, stop_after: int | None,
          compile_cache: str | None) -> Plan:
    """Validate every field, the output directories (by creating them: `paths`) and the
    checkpoint to resume; choose the compilation cache. Nothing is built or compiled here,
    and nothing in the run's directory changes, so a bad config or a failed resume loses
    nothing."""
    t_call = time.perf_counter()
    validate(config)
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int)
                                   or stop_after < 1):
        raise ConfigError(f"stop_after = {stop_after!r} is invalid: a positive iteration")
    directory = config.checkpoint_dir
    if directory:
        check_output_dir(directory, "config field `checkpoint_dir` (--checkpoint-dir)")
        if config.tensorboard:
            check_output_dir(os.path.join(directory, "tensorboard"),
                             "config field `tensorboard` (events in checkpoint_dir/tensorboard)")
        if config.wandb:  # wandb writes under checkpoint_dir/wandb (else in its own place)
            check_output_dir(os.path.join(directory, "wandb"),
                             "config field `wandb` (its files in checkpoint_dir/wandb)")
    if directory or restore is not None:
        from distillax import checkpoint

        if restore is None and directory:
            checkpoint.require_empty(directory)
        if restore is not None and restore.step > config.num_iterations:
            raise checkpoint.CheckpointError(
                f"checkpoint {os.path.join(directory, str(restore.step))} is at iteration "
                f"{restore.step}, past total_steps = {config.total_steps} "
                f"({config.num_iterations} iterations); pass a larger --total-steps")
    in_use = cache.use_compile_cache(
        cache.default_cache_dir() if compile_cache == "default" else compile_cache)
    store = programs.Store(directory=os.path.join(in_use, cache.PROGRAMS),
                           max_bytes=cache.max_bytes() // 2) if in_use else None
    return Plan(config=config, restore=restore, stop_after=stop_after, store=store,
                t_call=t_call)


class Run:
    """One run's state on its way through the loop, and the loop's decisions: how many
    iterations each call runs, when to evaluate, when to save, when to stop.

    Calls end at multiples of `chunk` from iteration 0 (whatever the start), evaluations where
    a multiple of the evaluation interval is crossed and at the end, checkpoints where a
    multiple of `save_every` is crossed, at the last call, or (checkpoint_every 0) when the
    last save is over `AUTO_CHECKPOINT_S` old: so a resumed run makes the same calls on the
    same states as an uninterrupted one.
    """

    def __init__(self, plan: Plan):
        """Build the mesh, the model, the state (restored when resuming), the training and
        evaluation programs' runners; memory bounds are checked before the state is made
        (`--seeds 100000` made states for minutes, then failed)."""
        c = self.config = plan.config
        self.plan, self.total = plan, c.num_iterations
        self.mesh = parallel.make_mesh(c.num_devices)
        self.model = build_model(c)
        limits.require_fits(limits.training(c, self.model.env))
        limits.require_fits(limits.evaluation(
            c, self.model.env, c.eval_contexts * c.num_runs, name="config field `eval_contexts`",
            value=c.eval_contexts, what=f"held-out episodes in {c.eval_contexts:,} contexts x "
                                        f"{c.num_runs} run{'s' * (c.num_runs > 1)}"))
        state = init_run_state(self.model)  # a leading seed axis [S, ...] when c.seeds > 1
        self.chunk = min(c.report_every, self.total)
        self.runner = make_runner(self.model, state, self.mesh, self.chunk)
        self.state = self.runner.place(state)
        if plan.restore is not None:
            from distillax import checkpoint

            # The fresh state only lends its structure and shardings (the current mesh's).
            self.state = checkpoint.restore_train_state(plan.restore, self.state)
        self.start = self.it = parallel.host_iteration(self.state)
        self.stop_at = (self.total if plan.stop_after is None
                        else min(self.total, max(plan.stop_after, self.start)))
        self.evaluator = make_evaluator(self.model)
        self.every = eval_interval(c, self.model.env.max_steps)
        self.startup_s = time.perf_counter() - plan.t_call
        self.compile_s, self.loaded, self.train_s, self.eval_s = 0.0, 0, 0.0, 0.0
        self.history: list[dict[str, Any]] = []
        self.fault: str | None = None  # the numerical guard's message, once a call had one
        self.saved_at = time.perf_counter()

    @property
    def running(self) -> bool:
        return self.it < self.stop_at and self.fault is None

    def compile(self) -> None:
        """Both programs, unless the run is done already; the evaluation program only if
        this segment evaluates (it costs as much as training's on MJX tasks)."""
        if self.start < self.stop_at:
            evaluates = (self.stop_at // self.every > self.start // self.every
                         or self.stop_at == self.total)
            self.runner, self.compile_s, self.loaded = _compile(
                self.runner, self.state, self.evaluator if evaluates else None, self.model,
                self.plan.store)

    def banner(self, dropped: int) -> str:
        """The run's first line: what it trains, on what, and how long it took to start."""
        c, total = self.config, self.total
        where = ""
        if self.plan.restore is not None:
            where = (f"; resumed {c.checkpoint_dir} from iteration {self.start}"
                     + (f" ({dropped} later records dropped from metrics.jsonl)"
                        if dropped else ""))
        noise = ("swept" if "noise_scale" in dict(c.sweep) else f"{c.resolved_noise_scale:g}x")
        return (f"distillax: task={c.task} method={c.method} partitions={c.partitions} "
                f"envs={c.num_envs} devices={self.mesh.size} iterations={total} "
                f"({c.steps_per_iteration:,} env steps each"
                + (f"; the last {total - c.teacher_iterations} with the teachers frozen"
                   if total > c.teacher_iterations else "") + ")"
                + (f" x {c.seeds} seeds" if c.seeds > 1 else "")
                + (f" x {len(c.members)} sweep members" if c.sweep else "")
                + (f"; 1 env in {c.noise_every} of each cell acts with {noise} noise"
                   if c.noise_every else "")
                + f"; started in {self.startup_s:.1f} s, compiled in {self.compile_s:.1f} s"
                + (f" ({self.loaded} program{'s' * (self.loaded > 1)} from the cache)"
                   if self.loaded else "") + where)

    def step(self, saver: Any) -> dict[str, Any] | None:
        """One call of the training program; its record (with a held-out evaluation where
        one is due), or None when the numerical guard flagged it (`fault`): a faulty state
        is neither recorded nor saved, so the last checkpoint stays the last good one."""
        c = self.config
        n = min(self.chunk - self.it % self.chunk, self.stop_at - self.it)
        t = time.perf_counter()
        self.state, metrics = self.runner.step(self.state, self.runner.count(n))
        jax.block_until_ready(metrics)
        dt = time.perf_counter() - t
        self.train_s += dt
        self.prev, self.it = self.it, parallel.host_iteration(self.state)
        if saver:  # a save whose background write failed (a full disk) stops it here
            saver.check()
        # The guard's flags come with the metrics (no extra sync)
        self.fault = nonfinite_report(parallel.host_local(metrics.nonfinite)[:n], self.prev)
        if self.fault:
            return None
        # Throughput counts every seed's env steps; `env_steps` is per run (per seed).
        record = _record(metrics, n - 1, self.it, c,
                         n * c.steps_per_iteration * c.num_runs / dt)
        # Evaluate where a multiple of the interval was crossed: the same iterations
        # whether or not the run was resumed in between.
        if self.it // self.every > self.prev // self.every or self.it == self.total:
            t = time.perf_counter()
            _evaluate_into(record, self.evaluator, run_policies(self.model, self.state), c)
            self.eval_s += time.perf_counter() - t
        self.history.append(record)
        return record

    def save_if_due(self, saver: Any, stopping: bool) -> None:
        c, save_every = self.config, self.config.save_every
        last = self.it >= self.stop_at or stopping
        overdue = (not c.checkpoint_every
                   and time.perf_counter() - self.saved_at > AUTO_CHECKPOINT_S)
        if saver and (self.it // save_every > self.prev // save_every or last or overdue):
            saver.save(self.state, c, self.mesh.size)
            self.saved_at = time.perf_counter()

    def finish(self, out: Outputs, log: Callable[[str], None]) -> Summary:
        """Close the progress display and the checkpoints (waiting for their writes); raise
        the guard's `NumericalError`; else print the times, and at the end of the run
        evaluate, print and write the final report."""
        c, saver = self.config, out.saver
        out.progress.close()
        summary = Summary(history=self.history, final={}, compile_s=self.compile_s,
                          train_s=self.train_s, steps_per_s=0.0, start_iteration=self.start,
                          iteration=self.it, startup_s=self.startup_s)
        if saver:
            summary.checkpoint_wait_s = saver.close()
            summary.checkpoints = saver.saves
            summary.checkpoint_blocking_s = saver.blocking_s
        if self.fault:
            raise NumericalError(_fault_message(self.fault, c.checkpoint_dir))
        summary.steps_per_s = ((self.it - self.start) * c.steps_per_iteration * c.num_runs
                               / max(self.train_s, 1e-9))
        log(f"compile time {self.compile_s:.1f} s (excluded) | training {self.train_s:.1f} s "
            f"| {summary.steps_per_s:,.0f} env-steps/s")
        if saver:
            from distillax import checkpoint

            log(f"checkpoints: {saver.saves} saved to {c.checkpoint_dir} (latest: iteration "
                f"{max(checkpoint.steps(c.checkpoint_dir), default=0)}); saving held training "
                f"{summary.checkpoint_blocking_s:.2f} s, {summary.checkpoint_wait_s:.2f} s "
                "waited at exit")
        if self.it < self.total:
            log(f"stopped at iteration {self.it} of {self.total}"
                + (f"; continue with: python -m distillax.train --resume {c.checkpoint_dir}"
                   if c.checkpoint_dir else ""))
        else:
            t = time.perf_counter()
            summary.final = report(self.evaluator, run_policies(self.model, self.state))
            self.eval_s += time.perf_counter() - t
            for line in final_lines(summary.final, self.model, c):
                log(line)
        summary.eval_s = self.eval_s
        summary.wall_s = time.perf_counter() - self.plan.t_call
        if summary.final and c.checkpoint_dir and out.primary:
            _write_results(c, summary)
        return summary


def _evaluate_into(record: dict[str, Any], evaluator: Evaluator, policies: Any,
                   config: Config) -> None:
    """A periodic evaluation's fields of `record`: the central policy's greedy held-out
    return (per seed and its interval with seeds, per member with a sweep), how much of its
    teachers' return it keeps and its fit per cell."""
    done = {(True, CENTRAL): evaluator.episodes(policies, True, CENTRAL)}
    record.update(cell_means(fit_fields(evaluator, policies, done)))
    if (True, TEACHERS) in done:  # what `kept` is measured against
        record["teachers_heldout_return"] = float(done[True, TEACHERS].returns.mean())
    r = done[True, CENTRAL].returns.mean(axis=1)
    record["central_return"] = float(np.mean(r))
    if config.num_runs > 1:
        _, lo, hi = mean_ci95(r)
        record["central_return_seeds"], record["central_return_ci95"] = r.tolist(), [lo, hi]
    for member, group in zip(record.get("members", ()), by_member(config, r.tolist())):
        m, lo, hi = mean_ci95(group)
        member["central_return"], member["central_return_ci95"] = m, [lo, hi]


def _write_results(config: Config, summary: Summary) -> None:
    """results.json (the final report and the run's times), and a sweep's files."""
    directory = config.checkpoint_dir
    if config.sweep:
        sweep_files(directory, config, summary.final)
    times = ("startup_s", "compile_s", "train_s", "eval_s", "steps_per_s", "checkpoints",
             "checkpoint_blocking_s", "checkpoint_wait_s", "wall_s")
    write_json(os.path.join(directory, "results.json"), {
        **summary.final, **{k: getattr(summary, k) for k in times},
        "start_iteration": summary.start_iteration, "iterations": config.num_iterations})


@removing_unused()  # the directories checked by the plan go again if the run writes nothing
def _run(config: Config, log: Callable[[str], None], restore: Any, stop_after: int | None,
         handle_signals: bool, compile_cache: str | None) -> tuple[TrainState, Summary]:
    plan = _plan(config, restore, stop_after, compile_cache)
    run = Run(plan)
    primary = parallel.is_primary()
    log = log if primary else _silent
    with Outputs(config, restore, run.start, log, primary) as out, \
            _StopRequest(handle_signals, log) as stop:
        run.compile()
        log(run.banner(out.dropped))
        while run.running and not stop.requested:
            record = run.step(out.saver)
            if record is None:
                break
            out.write(record)
            run.save_if_due(out.saver, stop.requested)
        summary = run.finish(out, log)
    return run.state, summary
