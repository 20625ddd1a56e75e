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
`$XDG_CACHE_HOME/distillax/jax` or `~/.cache/distillax/jax`), so a second run of the same
config starts at once; `--no-compile-cache` leaves JAX's own settings (no cache) instead.
"""

from __future__ import annotations

import sys

import argparse
import dataclasses
from typing import Any

from distillax import parallel
from distillax.config import Config, ConfigError
from distillax.run import resume, train
from distillax.trainer import NumericalError

RUN_FLAGS = ("resume", "resume_step", "stop_after", "compile_cache", "coordinator",
             "num_processes", "process_id", "distributed")


# --- command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    """Config flags default to SUPPRESS, so the parse holds only the flags actually given:
    a fresh run fills the rest from `Config`'s defaults, a resume from the stored config."""
    p = argparse.ArgumentParser(prog="python -m distillax.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
                          "~/.cache/distillax/jax)")
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
        else:  # a None default (the method's coupling_coef) takes a number
            cfg.add_argument(flag, type=float if default is None else type(default),
                             default=argparse.SUPPRESS, help=help_)
    return p


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """(run-control options, the config fields given on the command line)."""
    args = vars(_parser().parse_args(argv))
    opts = argparse.Namespace(**{k: args.pop(k) for k in RUN_FLAGS})
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
                if opts.resume_step is not None:
                    raise ConfigError("--resume-step needs --resume DIR")
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
