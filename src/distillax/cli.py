"""The training command line over `distillax.run` (train or resume): `python -m distillax.train`
(`train.py` only hands over to `main` here).

    python -m distillax.train --checkpoint-dir runs/a              # a fresh run
    python -m distillax.train --resume runs/a [--total-steps N]    # continue it
    python -m distillax.train --seeds 4                            # 4 seeds in one program
    python -m distillax.train --coordinator HOST:PORT --num-processes N --process-id I
    python -m distillax.train --distributed auto                   # SLURM, MPI, Cloud TPU

Library use: `state, summary = distillax.train(Config(...))`; `distillax.resume("runs/a")`
(both in `distillax.run`). Ctrl-C or SIGTERM stops at the end of the running call and saves a
checkpoint first; a `kill -9` loses the iterations since the last checkpoint. Exit status 2
for a bad config or checkpoint, 3 when the numerical guard stops the run (a non-finite
reward, loss term, gradient or parameter; the faulty state is not saved).

Compiled programs are cached on disk (JAX's persistent compilation cache, in
`$XDG_CACHE_HOME/distillax/jax` or `~/.cache/distillax/jax`, and the training and
evaluation executables whole in its `programs/`, `distillax.programs`), so a second run of
the same config (or of one that changes only coefficients) starts at once;
`--no-compile-cache` leaves JAX's own settings (no cache) instead. `python -m
distillax.cache clear` empties the cache; `DISTILLAX_CACHE_BYTES` caps it (`distillax.cache`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any, NoReturn

from distillax import methods, parallel
from distillax.config import (
    ACTIVATIONS,
    DIVERGENCES,
    GROUPS,
    MEMORIES,
    PARTITIONERS,
    SCHEDULES,
    WANDB_MODES,
    Config,
    ConfigError,
    help_text,
)
from distillax.run import resume, train
from distillax.trainer import NumericalError

RUN_FLAGS = ("resume", "resume_step", "stop_after", "compile_cache", "preset", "config",
             "coordinator", "num_processes", "process_id", "distributed")


# --- command line -------------------------------------------------------------------------


def _choices(name: str) -> tuple[str, ...] | None:
    """The valid values of a string field, for --help (validation stays `config.validate`'s)."""
    if name == "task":
        from distillax import envs

        return tuple(envs.names())
    return {"method": methods.names(), "partitioner": PARTITIONERS, "divergence": DIVERGENCES,
            "distill_schedule": SCHEDULES, "activation": ACTIVATIONS,
            "teacher_memory": MEMORIES, "central_memory": MEMORIES,
            "wandb_mode": WANDB_MODES}.get(name)


def _default_text(f: dataclasses.Field) -> str:
    d = f.default
    if d is None:
        return "unset"
    if isinstance(d, tuple):
        return ",".join(map(str, d)) if d else "none"
    return str(d)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors (an unknown flag, a value of the wrong type, a choice not
    offered) are one line, as every other error here: the usage of ~70 flags buries it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (--help lists the flags)\n")


def _parser() -> argparse.ArgumentParser:
    """Config flags default to SUPPRESS, so the parse holds only the flags actually given:
    a fresh run fills the rest from `Config`'s defaults (then a preset, then a config file),
    a resume from the stored config. Every config flag's help is its field's metadata."""
    p = OneLineParser(prog="python -m distillax.train", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    from distillax import envs
    from distillax.checkpoint import RESUME_MAY_CHANGE

    run = p.add_argument_group("run control (not part of the config)")
    run.add_argument("--resume", metavar="DIR", default=None,
                     help="continue the run in DIR from its latest checkpoint with its stored "
                          "config; config flags given as well override it (only "
                          f"{', '.join(RESUME_MAY_CHANGE)} may change)")
    run.add_argument("--resume-step", metavar="ITERATION", type=int, default=None,
                     help="with --resume: the checkpoint to continue from (default: latest)")
    run.add_argument("--stop-after", metavar="ITERATION", type=int, default=None,
                     help="stop once the run reaches this iteration, with a checkpoint "
                          "(continue later with --resume)")
    run.add_argument("--compile-cache", action=argparse.BooleanOptionalAction, default=True,
                     help="cache compiled programs on disk (default: on, in "
                          "~/.cache/distillax/jax; the training and evaluation programs "
                          "whole in its programs/; capped by DISTILLAX_CACHE_BYTES, default "
                          "2G; emptied by: python -m distillax.cache clear)")
    run.add_argument("--preset", metavar="NAME", default=None,
                     help="the settings the experiments use for a shipped task (sets --task "
                          f"too): one of {', '.join(envs.names())} (distillax.presets)")
    run.add_argument("--config", metavar="FILE", default=None,
                     help="config fields from a JSON or TOML file (a table of field = value; "
                          "over a preset, under the flags given)")
    parallel.distributed_flags(p)
    groups = {g: p.add_argument_group(f"config: {g}") for g in GROUPS}
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        choices = _choices(f.name)
        help_ = help_text(f) + (f" (choices: {', '.join(choices)}; " if choices else " (")
        help_ += f"default: {_default_text(f)})"
        g = groups[f.metadata["group"]]
        if f.name == "sweep":
            g.add_argument(flag, metavar="FIELD=V,V,...", action="append",
                           default=argparse.SUPPRESS, help=help_)
        elif isinstance(f.default, bool):
            g.add_argument(flag, action=argparse.BooleanOptionalAction,
                           default=argparse.SUPPRESS, help=help_)
        elif isinstance(f.default, tuple):
            g.add_argument(flag, metavar="N,N,...", type=str, default=argparse.SUPPRESS,
                           help=help_)
        else:  # a None default (the method's coupling_coef) takes a number
            g.add_argument(flag, type=float if f.default is None else type(f.default),
                           metavar=f.name.upper(), default=argparse.SUPPRESS, help=help_)
    return p


def _int_tuple(name: str, raw: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in raw.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"config field `{name}` = {raw!r} is invalid: comma-separated "
                          "integers, e.g. 64,64") from None


def _sweep(items: list[str]) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """`["coupling_coef=0.01,0.1", ...]` -> `(("coupling_coef", (0.01, 0.1)), ...)`."""
    out = []
    for item in items:
        name, sep, values = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out.append((name.strip().replace("-", "_"),
                        tuple(float(v) for v in values.split(",") if v.strip())))
        except ValueError:
            raise ConfigError(f"config field `sweep` = {item!r} is invalid: FIELD=V,V,... with "
                              "numbers, e.g. coupling_coef=0.001,0.01,0.1") from None
    return tuple(out)


def read_config_file(path: str) -> dict[str, Any]:
    """The config fields in a JSON (`.json`) or TOML (`.toml`) file: a table of field = value,
    as `Config.to_dict` writes it (lists for tuples). A missing or malformed file, or an
    unknown field, is a `ConfigError` naming the file."""
    import json
    import tomllib

    kind = os.path.splitext(path)[1].lower()
    if kind not in (".json", ".toml"):
        raise ConfigError(f"--config {path!r} is invalid: a .json or .toml file")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f) if kind == ".toml" else json.loads(f.read())
    except OSError as e:
        raise ConfigError(f"--config {path!r} cannot be read: {e.strerror}") from None
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"--config {path!r} is not valid {kind[1:].upper()}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path!r} is invalid: a table of config fields")
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"--config {path!r} has unknown config field(s) {unknown}")
    return data


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """(run-control options, the config fields given: a preset's, then a config file's, then
    the flags')."""
    args = vars(_parser().parse_args(argv))
    opts = argparse.Namespace(**{k: args.pop(k) for k in RUN_FLAGS})
    _check_run_flags(opts)
    for f in dataclasses.fields(Config):
        if f.name == "sweep" and "sweep" in args:
            args["sweep"] = _sweep(args["sweep"])
        elif isinstance(f.default, tuple) and f.name in args:
            args[f.name] = _int_tuple(f.name, args[f.name])
    given: dict[str, Any] = {}
    if opts.preset is not None:
        from distillax.presets import preset

        given.update(preset(opts.preset))
    if opts.config is not None:
        data = read_config_file(opts.config)
        read = Config.from_dict(data)  # (lists as tuples)
        given.update({k: getattr(read, k) for k in data})
    if opts.resume and (opts.preset or opts.config):
        raise ConfigError("--preset and --config set up a fresh run; a resumed run keeps its "
                          "stored config (pass the fields that may change as flags)")
    given.update(args)
    return opts, given


def _check_run_flags(opts: argparse.Namespace) -> None:
    """The run-control flags, before anything starts: the multi-process ones
    (`parallel.check_distributed`, which `initialize_distributed` applies for library use too)
    and --resume-step. Whether that step exists is `checkpoint.read_run`'s to say, which
    resuming calls first (its message lists the steps there)."""
    parallel.check_distributed(opts.coordinator, opts.num_processes, opts.process_id,
                               opts.distributed == "auto")
    if opts.resume_step is not None:
        if not opts.resume:
            raise ConfigError("--resume-step needs --resume DIR")
        if opts.resume_step < 0:
            raise ConfigError(f"--resume-step = {opts.resume_step} is invalid: a checkpoint "
                              "step of the --resume run (an iteration >= 0)")


def config_from_args(argv: list[str] | None = None) -> Config:
    """The config of a fresh run: `Config`'s defaults, overridden by a preset, a config file
    and the flags in `argv`."""
    return Config(**_parse(argv)[1])


def main(argv: list[str] | None = None) -> int:
    from distillax.checkpoint import CheckpointError, cli_notes

    try:
        opts, given = _parse(argv)
        parallel.initialize_from_argv(argv if argv is not None else sys.argv[1:])
        cache = "default" if opts.compile_cache else None
        with cli_notes():
            if opts.resume:
                resume(opts.resume, step=opts.resume_step, stop_after=opts.stop_after,
                       handle_signals=True, compile_cache=cache, **given)
            else:
                train(Config(**given), stop_after=opts.stop_after, handle_signals=True,
                      compile_cache=cache)
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
