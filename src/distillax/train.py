"""`python -m distillax.train`: parse, validate, train, evaluate held-out, save.

Library use: `state, summary = distillax.train(Config(...))`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import numpy as np

from distillax import logs, parallel
from distillax.config import Config, ConfigError, validate
from distillax.model import Model, build_model
from distillax.trainer import (IterationMetrics, TrainState, evaluate, heldout_contexts,
                               init_state, make_runner)


@dataclasses.dataclass
class Summary:
    """What a run reports: per-report records and the final held-out evaluation."""

    history: list[dict[str, Any]]
    final: dict[str, Any]
    compile_s: float
    train_s: float
    steps_per_s: float


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
    last = jax.tree.map(lambda x: np.asarray(x[-1]), metrics)
    it = int(state.iteration)
    u = last.update
    return {
        "iteration": it,
        "env_steps": it * config.steps_per_iteration,
        "steps_per_s": steps_per_s,
        "teacher_return": last.teacher_return,
        "loss": u.loss,
        "distill_kl": u.distill,
        "couple_kl": u.teacher.couple,
        "central_log_ratio": u.teacher.central_log_ratio,
        "entropy": u.teacher.entropy,
        "value_loss": u.teacher.value,
        "approx_kl": u.teacher.approx_kl,
        "clip_frac": u.teacher.clip_frac,
    }


def train(config: Config, log: Callable[[str], None] = print) -> tuple[TrainState, Summary]:
    """Train `config` to its env-step budget; returns the final state and a summary."""
    mesh = parallel.make_mesh(config.num_devices)
    validate(config, num_devices=mesh.size)
    model = build_model(config)
    key = jax.random.PRNGKey(config.seed)
    state = init_state(model, key)
    sink = None
    if config.checkpoint_dir:
        os.makedirs(config.checkpoint_dir, exist_ok=True)
        with open(os.path.join(config.checkpoint_dir, "config.json"), "w") as f:
            f.write(config.to_json())
        sink = logs.JsonlSink(os.path.join(config.checkpoint_dir, "metrics.jsonl"))

    total = config.num_iterations
    chunk = min(config.log_every, total)
    runner = make_runner(model, state, mesh, chunk)
    state = runner.place(state)
    t0 = time.perf_counter()
    compiled = {chunk: runner.step.lower(state).compile()}
    compile_s = time.perf_counter() - t0
    log(f"distillax: task={config.task} method={config.method} partitions="
        f"{config.num_partitions} envs={config.num_envs} devices={mesh.size} "
        f"iterations={total} ({config.steps_per_iteration:,} env steps each); "
        f"compiled in {compile_s:.1f} s")

    history: list[dict[str, Any]] = []
    train_s, last_eval = 0.0, 0
    eval_key = jax.random.PRNGKey(config.seed + 1)
    contexts = heldout_contexts(model)
    while int(state.iteration) < total:
        n = min(chunk, total - int(state.iteration))
        if n not in compiled:  # the last, shorter chunk
            t = time.perf_counter()
            compiled[n] = make_runner(model, state, mesh, n).step.lower(state).compile()
            compile_s += time.perf_counter() - t
        t = time.perf_counter()
        state, metrics = compiled[n](state)
        jax.block_until_ready(metrics)
        dt = time.perf_counter() - t
        train_s += dt
        record = _record(metrics, state, config, n * config.steps_per_iteration / dt)
        it = int(state.iteration)
        if it - last_eval >= config.eval_every or it == total:
            r = evaluate(model, state, contexts, eval_key, greedy=True, who="central")
            record["central_return"] = float(np.mean(r))
            last_eval = it
        history.append(record)
        if sink:
            sink.write(record)
        log(logs.progress_line(record, total))

    steps_per_s = total * config.steps_per_iteration / max(train_s, 1e-9)
    final = heldout_report(model, state, eval_key)
    who = "central policy" if model.has_central else "ppo policy (no central)"
    log(f"compile time {compile_s:.1f} s (excluded) | training {train_s:.1f} s | "
        f"{steps_per_s:,.0f} env-steps/s")
    log(f"{who} held-out return over {final['contexts']} contexts: "
        f"{final['central_greedy']:.1f} greedy, {final['central_sampled']:.1f} sampled")
    log(f"teachers (each in its own cell) held-out return: {final['teachers_greedy']:.1f} "
        f"greedy, {final['teachers_sampled']:.1f} sampled")
    summary = Summary(history, final, compile_s, train_s, steps_per_s)
    if sink:
        sink.close()
        with open(os.path.join(config.checkpoint_dir, "results.json"), "w") as f:
            json.dump(logs.to_python({**final, "compile_s": compile_s, "train_s": train_s,
                                      "steps_per_s": steps_per_s}), f, indent=2)
    return state, summary


# --- command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m distillax.train", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            p.add_argument(flag, default=",".join(map(str, default)), metavar="N,N,...",
                           type=str)
        else:
            p.add_argument(flag, type=type(default), default=default)
    return p


def config_from_args(argv: list[str] | None = None) -> Config:
    args = vars(_parser().parse_args(argv))
    for f in dataclasses.fields(Config):
        if isinstance(f.default, tuple):
            raw = args[f.name]
            try:
                args[f.name] = tuple(int(x) for x in raw.split(",") if x.strip())
            except ValueError:
                raise ConfigError(f"config field `{f.name}` = {raw!r} is invalid: "
                                  "comma-separated integers, e.g. 64,64") from None
    return Config(**args)


def main(argv: list[str] | None = None) -> int:
    try:
        config = config_from_args(argv)
        train(config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
