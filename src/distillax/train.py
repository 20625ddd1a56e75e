"""`python -m distillax.train`: parse, validate, train or resume, checkpoint, evaluate held-out.

    python -m distillax.train --checkpoint-dir runs/a              # a fresh run
    python -m distillax.train --resume runs/a [--total-steps N]    # continue it
    python -m distillax.train --seeds 4                            # 4 seeds in one program
    python -m distillax.train --coordinator HOST:PORT --num-processes N --process-id I
    python -m distillax.train --distributed auto                   # SLURM, MPI, Cloud TPU

Library use: `state, summary = distillax.train(Config(...))`; `distillax.resume("runs/a")`.

The loop runs up to `log_every` iterations per host call. Calls end at multiples of
`log_every` counted from iteration 0 (and at the end, or at `stop_after`), checkpoints are
taken only between calls, and the RNG key lives in the state: so a resumed run executes the
same compiled steps on the same state as an uninterrupted one and reproduces it bit for bit
(on CPU, with the same device count). A `kill -9` loses the iterations since the last
checkpoint; Ctrl-C or SIGTERM on the command line stops at the end of the running call and
saves a checkpoint first. A non-finite reward, loss term, gradient or parameter (flagged inside
the jitted step) stops the run at the end of its call with `NumericalError` naming the
iteration and the term, without recording or saving the faulty state; the command line exits
with status 3 (2 for a bad config or checkpoint).

With `seeds = S > 1` the state carries a leading seed axis (run s is the run of seed
`seed + s`); records and results give the mean over seeds under the usual names, plus
`<name>_seeds` and a 95% Student-t interval `<name>_ci95`. In a multi-process run every
process runs this loop on its share of the envs; only process 0 logs and writes files other
than its checkpoint shards.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # Join a multi-process program before anything starts the JAX backend: the imports below
    # do (gymnax creates arrays when imported).
    from distillax.parallel import initialize_from_argv

    initialize_from_argv(sys.argv[1:])

import argparse
import dataclasses
import json
import os
import signal
import threading
import time
import types
from typing import Any, Callable

import jax
import numpy as np
import scipy.stats

from distillax import checkpoint, logs, parallel
from distillax.checkpoint import CheckpointError, RunInfo
from distillax.config import Config, ConfigError, validate
from distillax.model import Model, build_model
from distillax.trainer import (IterationMetrics, NumericalError, TrainState, evaluate,
                               evaluation_view, heldout_contexts, init_run_state, make_runner,
                               nonfinite_report, seed_axis, select_seed)


@dataclasses.dataclass
class Summary:
    """What a run reports: per-report records and the final held-out evaluation.

    `final` is empty when the run stopped before its last iteration (`stop_after`, a signal).
    Times are those of this process: a resumed run counts from its restore.
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


def mean_ci95(values: Any) -> tuple[float, float, float]:
    """(mean, low, high) of per-seed values: a two-sided 95% Student-t interval,
    mean -/+ t_{0.975, S-1} * sd / sqrt(S) with the sample sd (ddof 1); (m, m, m) for S = 1."""
    v = np.asarray(values, np.float64)
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    half = float(scipy.stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half


def eval_keys(config: Config) -> list[jax.Array]:
    """Held-out evaluation key of each seed: `PRNGKey(seed + s + 1)`, as its own run uses."""
    return [jax.random.PRNGKey(config.seed + s + 1) for s in range(config.seeds)]


def seed_states(model: Model, state: TrainState) -> list[TrainState]:
    """Each seed's evaluation view (`evaluation_view`): one entry without a seed axis."""
    view = evaluation_view(state)
    if not seed_axis(model):
        return [view]
    return [select_seed(view, s) for s in range(model.config.seeds)]


def multi_seed_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-seed held-out reports -> their means (under the single-run keys), and for each
    return `<key>_seeds` (per seed) and `<key>_ci95` ([low, high], `mean_ci95`)."""
    out: dict[str, Any] = {"contexts": reports[0]["contexts"], "seeds": len(reports),
                           "interval": "95% Student-t over seeds"}
    for k in ("central_greedy", "central_sampled", "teachers_greedy", "teachers_sampled"):
        per = [r[k] for r in reports]
        m, lo, hi = mean_ci95(per)
        out[k], out[f"{k}_seeds"], out[f"{k}_ci95"] = m, per, [lo, hi]
    out["per_seed"] = reports
    return out


def heldout_report(model: Model, state: TrainState, key: jax.Array) -> dict[str, Any]:
    """Mean held-out returns of central and teachers, greedy (mode) and sampled actions."""
    contexts = heldout_contexts(model)
    out: dict[str, Any] = {"contexts": int(contexts.shape[0])}
    for who in ("central", "teachers"):
        for greedy in (True, False):
            r = np.asarray(evaluate(model, state, contexts, key, greedy, who))
            out[f"{who}_{'greedy' if greedy else 'sampled'}"] = float(r.mean())
            if greedy:
                out[f"{who}_greedy_per_context"] = r.tolist()
    return out


def _record(metrics: IterationMetrics, state: TrainState, config: Config,
            steps_per_s: float) -> dict[str, Any]:
    """The report of the last iteration of a call. With several seeds every metric is the mean
    over seeds (so the record keeps its single-run shape), and `<name>_seeds` holds the value
    of each seed (averaged over partitions) for the return, loss and distillation loss.

    `distill_loss` is the distillation divergence's value (a KL, an NLL or an MSE: config
    `divergence`); `couple` the coupling term alpha multiplies, whose meaning is the method's
    (`methods.MethodSpec.coupling.meaning`, 0 for a method without one)."""
    last = jax.tree.map(lambda x: np.asarray(x[-1]), parallel.host_local(metrics))
    it = parallel.host_iteration(state)
    u = last.update
    per_seed = {}
    if config.seeds > 1:
        per_seed = {"teacher_return_seeds": last.teacher_return.mean(axis=1),
                    "loss_seeds": u.loss, "distill_loss_seeds": u.distill.mean(axis=1)}
        last = jax.tree.map(lambda x: x.mean(axis=0), last)
        u = last.update
    return {
        "iteration": it,
        "env_steps": it * config.steps_per_iteration,
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

    def __enter__(self) -> "_StopRequest":
        if self.enabled:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def train(config: Config, log: Callable[[str], None] = print, *, stop_after: int | None = None,
          handle_signals: bool = False) -> tuple[TrainState, Summary]:
    """Train `config` to its env-step budget; returns the final state and a summary.

    With `config.checkpoint_dir` set, checkpoints go there (every `checkpoint_every`
    iterations and at the end), together with config.json, metrics.jsonl and results.json;
    the directory must not already hold checkpoints (continue those with `resume`).
    `stop_after`: stop once the run reaches this iteration, with a checkpoint.
    """
    return _run(config, log, None, stop_after, handle_signals)


def resume(directory: str, log: Callable[[str], None] = print, *, step: int | None = None,
           stop_after: int | None = None, handle_signals: bool = False,
           **overrides: Any) -> tuple[TrainState, Summary]:
    """Continue the run in `directory` from checkpoint `step` (default: the latest).

    The run keeps its stored config; `overrides` may change the fields in
    `checkpoint.RESUME_MAY_CHANGE` (e.g. `total_steps` to train longer). Raises
    `CheckpointError` before writing anything if the checkpoint is missing, unreadable, of
    another format version, or the overrides change any other field.
    """
    info = checkpoint.read_run(directory, step)
    given_dir = overrides.pop("checkpoint_dir", None)
    if given_dir and os.path.abspath(given_dir) != os.path.abspath(directory):
        raise CheckpointError(f"a resumed run writes into its own directory {directory!r}; "
                              f"got checkpoint_dir = {given_dir!r} as well")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Config)})
    if unknown:
        raise ConfigError(f"unknown config field(s) {unknown} to override on resume")
    config = info.config.replace(checkpoint_dir=directory, **overrides)
    checkpoint.check_resume(info, config)
    return _run(config, log, info, stop_after, handle_signals)


def _silent(_: str) -> None:
    """The log of processes other than 0."""


def _write_json(path: str, obj: Any) -> None:
    logs.write_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


def _fault_message(fault: str, directory: str) -> str:
    """What a user reads when the numerical guard stops a run: the fault, and what is kept."""
    good = max(checkpoint.steps(directory), default=None) if directory else None
    kept = (f"the last good checkpoint, {os.path.join(directory, str(good))} (iteration "
            f"{good}), is untouched" if good is not None else "no checkpoint was saved")
    return (f"training stopped: {fault}. The faulty state was not saved; {kept}. "
            + ("Resuming it would repeat the same computation: " if good is not None else "")
            + "start a new run with a smaller learning_rate / central_learning_rate / "
            "max_grad_norm, or fix the task's rewards")


def _run(config: Config, log: Callable[[str], None], restore: RunInfo | None,
         stop_after: int | None, handle_signals: bool) -> tuple[TrainState, Summary]:
    validate(config)  # every field first: nothing is built or compiled for a bad config
    mesh = parallel.make_mesh(config.num_devices)
    if stop_after is not None and (isinstance(stop_after, bool) or stop_after < 1):
        raise ConfigError(f"stop_after = {stop_after!r} is invalid: a positive iteration")
    directory = config.checkpoint_dir
    total = config.num_iterations
    if restore is None and directory:
        checkpoint.require_empty(directory)
    if restore is not None and restore.step > total:
        raise CheckpointError(
            f"checkpoint {os.path.join(directory, str(restore.step))} is at iteration "
            f"{restore.step}, past total_steps = {config.total_steps} ({total} iterations); "
            "pass a larger --total-steps")
    model = build_model(config)
    state = init_run_state(model)  # a leading seed axis [S, ...] when config.seeds > 1
    chunk = min(config.log_every, total)
    runner = make_runner(model, state, mesh, chunk)
    state = runner.place(state)
    if restore is not None:
        # The fresh state only lends its structure and shardings (the current mesh's).
        state = checkpoint.restore_train_state(restore, state)
    start = parallel.host_iteration(state)

    # Nothing in `directory` changes before this point, so a failed resume leaves it intact.
    # Only process 0 writes logs and files; orbax coordinates the processes' checkpoint writes.
    primary = parallel.is_primary()
    if not primary:
        log = _silent
    sink = tb = saver = None
    dropped = 0
    if directory:
        if primary:
            os.makedirs(directory, exist_ok=True)
            _write_json(os.path.join(directory, "config.json"), config.to_dict())
            metrics_path = os.path.join(directory, "metrics.jsonl")
            if restore is None:
                open(metrics_path, "w").close()  # a run that never checkpointed starts over
            else:
                dropped = logs.truncate_jsonl(metrics_path, start)
            sink = logs.JsonlSink(metrics_path)
            if config.tensorboard:
                tb = logs.TensorBoardSink(os.path.join(directory, "tensorboard"),
                                          purge_step=start * config.steps_per_iteration
                                          if restore is not None else None)
        saver = checkpoint.Saver(directory, config.max_to_keep)

    stop_at = total if stop_after is None else min(total, max(stop_after, start))
    t0 = time.perf_counter()
    compiled = {}
    if start < stop_at:  # a finished run, or one resumed at its stop_after, compiles nothing
        compiled[chunk] = runner.step.lower(state).compile()
    compile_s = time.perf_counter() - t0
    where = (f"resumed {directory} from iteration {start}"
             + (f" ({dropped} later records dropped from metrics.jsonl)" if dropped else "")
             if restore is not None else "")
    log(f"distillax: task={config.task} method={config.method} partitions="
        f"{config.num_partitions} envs={config.num_envs} devices={mesh.size} "
        f"iterations={total} ({config.steps_per_iteration:,} env steps each)"
        + (f" x {config.seeds} seeds" if config.seeds > 1 else "") + "; "
        f"compiled in {compile_s:.1f} s" + (f"; {where}" if where else ""))

    history: list[dict[str, Any]] = []
    train_s = 0.0
    keys = eval_keys(config)
    contexts = heldout_contexts(model)
    progress = logs.Progress(total, start, log)
    it = start
    fault = None  # the numerical guard's message, when a call produced non-finite values
    with _StopRequest(handle_signals, log) as stop:
        while it < stop_at and not stop.requested:
            # Calls end at multiples of `chunk` from iteration 0, whatever the start.
            n = min(chunk - it % chunk, stop_at - it)
            if n not in compiled:
                t = time.perf_counter()
                compiled[n] = make_runner(model, state, mesh, n).step.lower(state).compile()
                compile_s += time.perf_counter() - t
            t = time.perf_counter()
            state, metrics = compiled[n](state)
            jax.block_until_ready(metrics)
            dt = time.perf_counter() - t
            train_s += dt
            prev, it = it, parallel.host_iteration(state)
            # The guard's flags come with the metrics (no extra sync): a faulty state is
            # neither recorded nor saved, so the last checkpoint stays the last good one.
            fault = nonfinite_report(parallel.host_local(metrics.nonfinite), prev)
            if fault:
                break
            # Throughput counts every seed's env steps; `env_steps` is per run (per seed).
            record = _record(metrics, state, config,
                             n * config.steps_per_iteration * config.seeds / dt)
            # Evaluate where a multiple of eval_every was crossed: the same iterations
            # whether or not the run was resumed in between.
            if it // config.eval_every > prev // config.eval_every or it == total:
                r = [float(np.mean(evaluate(model, s, contexts, k, greedy=True,
                                            who="central")))
                     for s, k in zip(seed_states(model, state), keys)]
                record["central_return"] = float(np.mean(r))
                if config.seeds > 1:
                    m, lo, hi = mean_ci95(r)
                    record["central_return_seeds"], record["central_return_ci95"] = r, [lo, hi]
            history.append(record)
            for s in (sink, tb):
                if s:
                    s.write(record)
            progress.update(record)
            last = it >= stop_at or stop.requested
            if saver and (it // config.checkpoint_every > prev // config.checkpoint_every
                          or last):
                saver.save(state, config, mesh.size)
    progress.close()

    summary = Summary(history, {}, compile_s, train_s, 0.0, start, it)
    if saver:
        summary.checkpoint_wait_s = saver.close()
        summary.checkpoints, summary.checkpoint_blocking_s = saver.saves, saver.blocking_s
    if fault:
        for s in (sink, tb):
            if s:
                s.close()
        raise NumericalError(_fault_message(fault, directory))
    done = it - start
    summary.steps_per_s = done * config.steps_per_iteration * config.seeds / max(train_s, 1e-9)
    log(f"compile time {compile_s:.1f} s (excluded) | training {train_s:.1f} s | "
        f"{summary.steps_per_s:,.0f} env-steps/s")
    if saver:
        log(f"checkpoints: {saver.saves} saved to {directory} (latest: iteration "
            f"{max(checkpoint.steps(directory), default=0)}); saving held training "
            f"{summary.checkpoint_blocking_s:.2f} s, {summary.checkpoint_wait_s:.2f} s "
            "waited at exit")
    if it < total:
        log(f"stopped at iteration {it} of {total}"
            + (f"; continue with: python -m distillax.train --resume {directory}"
               if directory else ""))
    else:
        reports = [heldout_report(model, s, k) for s, k in zip(seed_states(model, state), keys)]
        final = reports[0] if len(reports) == 1 else multi_seed_report(reports)
        summary.final = final
        who = "central policy" if model.has_central else "ppo policy (no central)"
        log(f"{who} held-out return over {final['contexts']} contexts: "
            f"{final['central_greedy']:.1f} greedy, {final['central_sampled']:.1f} sampled")
        log(f"teachers (each in its own cell) held-out return: {final['teachers_greedy']:.1f} "
            f"greedy, {final['teachers_sampled']:.1f} sampled")
        if config.seeds > 1:
            for k in ("central_greedy", "teachers_greedy"):
                lo, hi = final[f"{k}_ci95"]
                seeds = " ".join(f"{v:.1f}" for v in final[f"{k}_seeds"])
                log(f"{k} over {config.seeds} seeds: mean {final[k]:.1f}, 95% interval "
                    f"[{lo:.1f}, {hi:.1f}] (Student t); per seed: {seeds}")
        if directory and primary:
            _write_json(os.path.join(directory, "results.json"), logs.to_python({
                **final, "compile_s": compile_s, "train_s": train_s,
                "steps_per_s": summary.steps_per_s, "start_iteration": start,
                "iterations": total, "checkpoints": summary.checkpoints,
                "checkpoint_blocking_s": summary.checkpoint_blocking_s,
                "checkpoint_wait_s": summary.checkpoint_wait_s}))
    for s in (sink, tb):
        if s:
            s.close()
    return state, summary


# --- command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    """Config flags default to SUPPRESS, so the parse holds only the flags actually given:
    a fresh run fills the rest from `Config`'s defaults, a resume from the stored config."""
    p = argparse.ArgumentParser(prog="python -m distillax.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    run = p.add_argument_group("run control (not part of the config)")
    run.add_argument("--resume", metavar="DIR", default=None,
                     help="continue the run in DIR from its latest checkpoint with its stored "
                          "config; config flags given as well override it (only "
                          f"{', '.join(checkpoint.RESUME_MAY_CHANGE)} may change)")
    run.add_argument("--resume-step", metavar="ITERATION", type=int, default=None,
                     help="with --resume: the checkpoint to continue from (default: latest)")
    run.add_argument("--stop-after", metavar="ITERATION", type=int, default=None,
                     help="stop once the run reaches this iteration, with a checkpoint "
                          "(continue later with --resume)")
    parallel.distributed_flags(p)
    cfg = p.add_argument_group("config (defaults shown; see distillax.config.Config)")
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_ = f"default: {','.join(map(str, default)) if isinstance(default, tuple) else default}"
        if isinstance(default, bool):
            cfg.add_argument(flag, action=argparse.BooleanOptionalAction,
                             default=argparse.SUPPRESS, help=help_)
        elif isinstance(default, tuple):
            cfg.add_argument(flag, metavar="N,N,...", type=str, default=argparse.SUPPRESS,
                             help=help_)
        else:
            cfg.add_argument(flag, type=type(default), default=argparse.SUPPRESS, help=help_)
    return p


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """(run-control options, the config fields given on the command line)."""
    args = vars(_parser().parse_args(argv))
    opts = argparse.Namespace(**{k: args.pop(k) for k in (
        "resume", "resume_step", "stop_after", "coordinator", "num_processes", "process_id",
        "distributed")})
    for f in dataclasses.fields(Config):
        if isinstance(f.default, tuple) and f.name in args:
            raw = args[f.name]
            try:
                args[f.name] = tuple(int(x) for x in raw.split(",") if x.strip())
            except ValueError:
                raise ConfigError(f"config field `{f.name}` = {raw!r} is invalid: "
                                  "comma-separated integers, e.g. 64,64") from None
    return opts, args


def config_from_args(argv: list[str] | None = None) -> Config:
    """The config of a fresh run: `Config`'s defaults, overridden by the flags in `argv`."""
    return Config(**_parse(argv)[1])


def main(argv: list[str] | None = None) -> int:
    try:
        opts, given = _parse(argv)
        parallel.initialize_from_argv(argv if argv is not None else sys.argv[1:])
        if opts.resume:
            resume(opts.resume, step=opts.resume_step, stop_after=opts.stop_after,
                   handle_signals=True, **given)
        else:
            if opts.resume_step is not None:
                raise ConfigError("--resume-step needs --resume DIR")
            train(Config(**given), stop_after=opts.stop_after, handle_signals=True)
    except (ConfigError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NumericalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # a second Ctrl-C: an unfinished save is never the latest
        print("interrupted: the run stops here; its latest complete checkpoint (if any) is "
              "what --resume continues from", file=sys.stderr)
        return 130
    return 0


class _CallableModule(types.ModuleType):
    """`distillax.train` names both this module (`python -m distillax.train`) and the library
    function (`from distillax import train`). Importing the submodule rebinds the package
    attribute to the module, so the module also calls through to the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[TrainState, Summary]:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
