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
    FIT_STATES,
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


@dataclasses.dataclass
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


def _write_json(path: str, obj: Any) -> None:
    logs.write_atomic(path, json.dumps(logs.to_python(obj), indent=2, sort_keys=True))


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


class Run:
    """The files of one run, opened together and closed together on every path (an
    `ExitStack`): config.json, the metrics sinks and the checkpoint saver in
    `config.checkpoint_dir`, and the progress display. Only process 0 writes files other than
    its checkpoint shards."""

    def __init__(self, config: Config, restore: Any, start: int, log: Callable[[str], None],
                 primary: bool):
        self.config, self.log = config, log
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
            _write_json(os.path.join(directory, "config.json"), c.to_dict())
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
            _write_json(id_path, {"id": sink.id})

    def write(self, record: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.write(record)
        self.progress.update(record)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Run:
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


@removing_unused()  # the directories checked below go again if the run writes nothing
def _run(config: Config, log: Callable[[str], None], restore: Any, stop_after: int | None,
         handle_signals: bool, compile_cache: str | None) -> tuple[TrainState, Summary]:
    t_call = time.perf_counter()
    validate(config)  # every field first: nothing is built or compiled for a bad config
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int)
                                   or stop_after < 1):
        raise ConfigError(f"stop_after = {stop_after!r} is invalid: a positive iteration")
    directory = config.checkpoint_dir
    if directory:  # where the run will write, before anything is built (`paths`)
        check_output_dir(directory, "config field `checkpoint_dir` (--checkpoint-dir)")
        if config.tensorboard:
            check_output_dir(os.path.join(directory, "tensorboard"),
                             "config field `tensorboard` (events in checkpoint_dir/tensorboard)")
        if config.wandb:  # wandb writes under checkpoint_dir/wandb (else in its own place)
            check_output_dir(os.path.join(directory, "wandb"),
                             "config field `wandb` (its files in checkpoint_dir/wandb)")
    total = config.num_iterations
    if directory or restore is not None:
        from distillax import checkpoint

        if restore is None and directory:
            checkpoint.require_empty(directory)
        if restore is not None and restore.step > total:
            raise checkpoint.CheckpointError(
                f"checkpoint {os.path.join(directory, str(restore.step))} is at iteration "
                f"{restore.step}, past total_steps = {config.total_steps} ({total} iterations); "
                "pass a larger --total-steps")
    directory_in_use = cache.use_compile_cache(
        cache.default_cache_dir() if compile_cache == "default" else compile_cache)
    store = programs.Store(directory=os.path.join(directory_in_use, cache.PROGRAMS),
                           max_bytes=cache.max_bytes() // 2) if directory_in_use else None
    mesh = parallel.make_mesh(config.num_devices)
    model = build_model(config)
    # before the state is made: `--seeds 100000` made states for minutes, then failed
    limits.require_fits(limits.training(config, model.env))
    limits.require_fits(limits.evaluation(
        config, model.env, config.eval_contexts * config.num_runs,
        name="config field `eval_contexts`", value=config.eval_contexts,
        what=f"held-out episodes in {config.eval_contexts:,} contexts x {config.num_runs} "
             f"run{'s' * (config.num_runs > 1)}"))
    state = init_run_state(model)  # a leading seed axis [S, ...] when config.seeds > 1
    chunk = min(config.report_every, total)
    runner = make_runner(model, state, mesh, chunk)
    state = runner.place(state)
    if restore is not None:
        from distillax import checkpoint

        # The fresh state only lends its structure and shardings (the current mesh's).
        state = checkpoint.restore_train_state(restore, state)
    start = parallel.host_iteration(state)
    stop_at = total if stop_after is None else min(total, max(stop_after, start))
    evaluator = make_evaluator(model)
    every = eval_interval(config, model.env.max_steps)
    startup_s = time.perf_counter() - t_call

    # Nothing in `directory` changes before this point, so a failed resume leaves it intact.
    primary = parallel.is_primary()
    if not primary:
        log = _silent
    with Run(config, restore, start, log, primary) as run, \
            _StopRequest(handle_signals, log) as stop:
        compile_s, loaded = 0.0, 0
        if start < stop_at:  # a finished run, or one resumed at its stop_after, compiles nothing
            # (a segment that stops before its first evaluation, e.g. --stop-after, does not
            # compile the evaluation program: it costs as much as training's on MJX tasks)
            evaluates = stop_at // every > start // every or stop_at == total
            runner, compile_s, loaded = _compile(runner, state, evaluator if evaluates else None,
                                                 model, store)
        where = (f"resumed {directory} from iteration {start}"
                 + (f" ({run.dropped} later records dropped from metrics.jsonl)"
                    if run.dropped else "") if restore is not None else "")
        log(f"distillax: task={config.task} method={config.method} partitions="
            f"{config.partitions} envs={config.num_envs} devices={mesh.size} "
            f"iterations={total} ({config.steps_per_iteration:,} env steps each"
            + (f"; the last {total - config.teacher_iterations} with the teachers frozen"
               if total > config.teacher_iterations else "") + ")"
            + (f" x {config.seeds} seeds" if config.seeds > 1 else "")
            + (f" x {len(config.members)} sweep members" if config.sweep else "")
            + (f"; 1 env in {config.noise_every} of each cell acts with "
               + ("swept" if "noise_scale" in dict(config.sweep)
                  else f"{config.resolved_noise_scale:g}x") + " noise"
               if config.noise_every else "") + "; "
            f"started in {startup_s:.1f} s, compiled in {compile_s:.1f} s"
            + (f" ({loaded} program{'s' * (loaded > 1)} from the cache)" if loaded else "")
            + (f"; {where}" if where else ""))

        history: list[dict[str, Any]] = []
        train_s = eval_s = 0.0
        it = start
        fault = None  # the numerical guard's message, when a call produced non-finite values
        saved_at = time.perf_counter()
        while it < stop_at and not stop.requested:
            # Calls end at multiples of `chunk` from iteration 0, whatever the start.
            n = min(chunk - it % chunk, stop_at - it)
            t = time.perf_counter()
            state, metrics = runner.step(state, runner.count(n))
            jax.block_until_ready(metrics)
            dt = time.perf_counter() - t
            train_s += dt
            prev, it = it, parallel.host_iteration(state)
            if run.saver:  # a save whose background write failed (a full disk) stops it here
                run.saver.check()
            # The guard's flags come with the metrics (no extra sync): a faulty state is
            # neither recorded nor saved, so the last checkpoint stays the last good one.
            fault = nonfinite_report(parallel.host_local(metrics.nonfinite)[:n], prev)
            if fault:
                break
            # Throughput counts every seed's env steps; `env_steps` is per run (per seed).
            record = _record(metrics, n - 1, it, config,
                             n * config.steps_per_iteration * config.num_runs / dt)
            # Evaluate where a multiple of the interval was crossed: the same iterations
            # whether or not the run was resumed in between.
            if it // every > prev // every or it == total:
                t = time.perf_counter()
                policies = run_policies(model, state)
                done = {(True, CENTRAL): evaluator.episodes(policies, True, CENTRAL)}
                record.update(cell_means(fit_fields(evaluator, policies, done)))
                if (True, TEACHERS) in done:  # what `kept` is measured against
                    record["teachers_heldout_return"] = float(
                        done[True, TEACHERS].returns.mean())
                r = done[True, CENTRAL].returns.mean(axis=1)
                eval_s += time.perf_counter() - t
                record["central_return"] = float(np.mean(r))
                if config.num_runs > 1:
                    m, lo, hi = mean_ci95(r)
                    record["central_return_seeds"], record["central_return_ci95"] = (
                        r.tolist(), [lo, hi])
                for member, group in zip(record.get("members", ()),
                                         by_member(config, r.tolist())):
                    m, lo, hi = mean_ci95(group)
                    member["central_return"], member["central_return_ci95"] = m, [lo, hi]
            history.append(record)
            run.write(record)
            last = it >= stop_at or stop.requested
            save_every = config.save_every
            overdue = (not config.checkpoint_every
                       and time.perf_counter() - saved_at > AUTO_CHECKPOINT_S)
            if run.saver and (it // save_every > prev // save_every or last or overdue):
                run.saver.save(state, config, mesh.size)
                saved_at = time.perf_counter()
        run.progress.close()
        summary = Summary(history, {}, compile_s, train_s, 0.0, start, it, startup_s=startup_s)
        if run.saver:
            summary.checkpoint_wait_s = run.saver.close()
            summary.checkpoints = run.saver.saves
            summary.checkpoint_blocking_s = run.saver.blocking_s
        if fault:
            raise NumericalError(_fault_message(fault, directory))
        done = it - start
        summary.steps_per_s = (done * config.steps_per_iteration * config.num_runs
                               / max(train_s, 1e-9))
        log(f"compile time {compile_s:.1f} s (excluded) | training {train_s:.1f} s | "
            f"{summary.steps_per_s:,.0f} env-steps/s")
        if run.saver:
            from distillax import checkpoint

            log(f"checkpoints: {run.saver.saves} saved to {directory} (latest: iteration "
                f"{max(checkpoint.steps(directory), default=0)}); saving held training "
                f"{summary.checkpoint_blocking_s:.2f} s, {summary.checkpoint_wait_s:.2f} s "
                "waited at exit")
        if it < total:
            log(f"stopped at iteration {it} of {total}"
                + (f"; continue with: python -m distillax.train --resume {directory}"
                   if directory else ""))
        else:
            t = time.perf_counter()
            final = report(evaluator, run_policies(model, state))
            eval_s += time.perf_counter() - t
            summary.final = final
            _log_final(log, final, model, config)
        summary.eval_s = eval_s
        summary.wall_s = time.perf_counter() - t_call
        if summary.final and directory and primary and config.sweep:
            sweep_files(directory, config, summary.final)
        if summary.final and directory and primary:
            _write_json(os.path.join(directory, "results.json"), {
                **summary.final, "startup_s": startup_s, "compile_s": compile_s,
                "train_s": train_s, "eval_s": eval_s, "steps_per_s": summary.steps_per_s,
                "start_iteration": start, "iterations": total,
                "checkpoints": summary.checkpoints,
                "checkpoint_blocking_s": summary.checkpoint_blocking_s,
                "checkpoint_wait_s": summary.checkpoint_wait_s, "wall_s": summary.wall_s})
    return state, summary


def _log_final(log: Callable[[str], None], final: dict[str, Any], model: Model,
               config: Config) -> None:
    who = "central policy" if model.has_central else f"{config.method} policy (no central)"
    log(f"{who} held-out return over {final['contexts']} contexts: "
        f"{final['central_greedy']:.1f} greedy, {final['central_sampled']:.1f} sampled")
    log(f"teachers (each in its own cell) held-out return: {final['teachers_greedy']:.1f} "
        f"greedy, {final['teachers_sampled']:.1f} sampled")
    if "kept" in final:
        log(f"the central policy keeps {final['kept']:.2f} of its teachers' return (greedy; "
            f"0 = a random policy's {final['random_return']:.1f}); per cell, on the states of")
        cells = lambda v: "[" + " ".join(f"{x:.3g}" for x in v) + "]"  # noqa: E731
        for name, _, _ in FIT_STATES:
            log(f"  {name.replace('_', ' ')} episodes: KL(teacher || central) "
                f"{cells(final[f'kl_{name}'])}, greedy-action gap "
                f"{cells(final[f'action_gap_{name}'])}")
    if config.sweep:
        log(sweep_table(config, final))
    elif config.seeds > 1:
        for k in ("central_greedy", "teachers_greedy"):
            lo, hi = final[f"{k}_ci95"]
            seeds = " ".join(f"{v:.1f}" for v in final[f"{k}_seeds"])
            log(f"{k} over {config.seeds} seeds: mean {final[k]:.1f}, 95% interval "
                f"[{lo:.1f}, {hi:.1f}] (Student t); per seed: {seeds}")


def sweep_table(config: Config, final: dict[str, Any]) -> str:
    """The members of a sweep's final report as a Markdown table: the swept values, then the
    central and teachers' held-out returns (greedy) with 95% intervals over seeds."""
    names = [name for name, _ in config.sweep]
    interval = config.seeds > 1

    def cell(m: dict[str, Any], k: str) -> str:
        if not interval:
            return f"{m[k]:.2f}"
        lo, hi = m[f"{k}_ci95"]
        return f"{m[k]:.2f} [{lo:.2f}, {hi:.2f}]"

    lines = ["| member | " + " | ".join(names) + " | central held-out | teachers (own cells) |",
             "|---|" + "---|" * len(names) + "---|---|"]
    for m in final["members"]:
        lines.append(f"| {m['member']} | " + " | ".join(f"{m['values'][n]:g}" for n in names)
                     + f" | {cell(m, 'central_greedy')} | {cell(m, 'teachers_greedy')} |")
    seeds = f"mean [95% Student-t interval] over {config.seeds} seeds" if interval else "one seed"
    return (f"sweep of {len(config.members)} members ({seeds}; greedy actions, "
            f"{final['contexts']} held-out contexts):\n" + "\n".join(lines))


def sweep_files(directory: str, config: Config, final: dict[str, Any]) -> None:
    """`sweep.md` (`sweep_table`) and `sweep.png`: held-out return against each swept value
    (one line per combination of the others' values), with the seeds' 95% intervals."""
    logs.write_atomic(os.path.join(directory, "sweep.md"), sweep_table(config, final) + "\n")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [name for name, _ in config.sweep]
    fig = Figure(figsize=(4.5 * len(names), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    members = final["members"]
    for ax, name in zip(axes, names):
        others = [n for n in names if n != name]
        keys = sorted({tuple(m["values"][o] for o in others) for m in members})
        for key in keys:
            row = sorted((m for m in members
                          if tuple(m["values"][o] for o in others) == key),
                         key=lambda m: m["values"][name])
            x = [m["values"][name] for m in row]
            y = [m["central_greedy"] for m in row]
            label = ", ".join(f"{o}={v:g}" for o, v in zip(others, key)) or "central"
            ax.plot(x, y, "o-", label=label)
            if config.seeds > 1:
                lo = [m["central_greedy_ci95"][0] for m in row]
                hi = [m["central_greedy_ci95"][1] for m in row]
                ax.fill_between(x, lo, hi, alpha=0.2)
        if min(v for _, vs in config.sweep if _ == name for v in vs) > 0:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("central held-out return (greedy)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{config.task} / {config.method}: sweep", fontsize=10)
    fig.savefig(os.path.join(directory, "sweep.png"), dpi=110)
