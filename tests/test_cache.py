"""The compilation cache and program store through the command line (issue 23): the two sequences
that crashed (a second run of a changed config; runs after the store was emptied while JAX's
cache was kept), and a sequence of runs that vary coefficients, host-only fields, the task, a
sweep and a recurrent policy, with and without JAX's cache, each bit for bit the run without
any cache. Every run is a new process, as a user's is: an executable that loads but cannot run
only fails in a process that did not compile it. Also: the cap, and emptying the cache."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from distillax import cache
from distillax.config import ConfigError

TINY = ["--num-envs", "8", "--num-steps", "8", "--num-minibatches", "2", "--update-epochs", "1",
        "--hidden-sizes", "8", "--kmeans-samples", "500", "--context-candidates", "8",
        "--eval-contexts", "4", "--log-every", "2", "--total-steps", "128"]
A = TINY + ["--partitions", "2"]  # cartpole, central
# pendulum, one recurrent policy, a sweep of 2 members: another task, a vmapped program, and
# a memory (its programs stored by one process, loaded by another)
B = TINY + ["--task", "pendulum", "--method", "ppo", "--partitions", "1", "--teacher-memory",
            "gru", "--memory-size", "8"]
TIMES = ("steps_per_s", "compile_s", "startup_s", "train_s", "eval_s", "wall_s",
         "checkpoint_blocking_s", "checkpoint_wait_s")


def _results(out: str) -> dict:
    """A run's results without its times: metrics.jsonl's records and results.json."""

    def strip(record):
        return {k: v for k, v in record.items() if k not in TIMES}

    with open(os.path.join(out, "metrics.jsonl")) as f:
        records = [strip(json.loads(line)) for line in f]
    with open(os.path.join(out, "results.json")) as f:
        return {"metrics": records, "results": strip(json.load(f))}


def _train(args: list[str], out: str, env: dict[str, str]) -> tuple[str, dict]:
    """Run the CLI in a new process; returns its first line and its results."""
    p = subprocess.run([sys.executable, "-m", "distillax.train", *args, "--checkpoint-dir", out],
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "note:" not in p.stderr, p.stderr[-3000:]
    return p.stdout.splitlines()[0], _results(out)


def _env(tmp, name: str, jax_cache: bool = True) -> dict[str, str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp / name)}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if not jax_cache:  # the program store alone
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return env


@pytest.mark.slow
def test_changed_configs_run_again_from_the_cache_bit_for_bit(tmp_path):
    runs = iter(range(100))

    def train(args, env):
        return _train(args, str(tmp_path / f"run{next(runs)}"), env)

    coef = A + ["--coupling-coef", "0.02"]
    sweep = B + ["--sweep", "gamma=0.9,0.95"]
    # other sweep values, another coefficient and other host-only fields at once: the same
    # programs, loaded (that a coefficient such as coupling_coef leaves the lowered programs
    # alone: test_programs.py)
    other = B + ["--sweep", "gamma=0.97,0.99", "--ent-coef", "0.02", "--eval-every", "1",
                 "--checkpoint-every", "1"]
    # the references, without any cache (one process: one start-up)
    refs = {"coef": coef, "other": other}
    calls = "; ".join(f"assert cli.main({args + ['--no-compile-cache', '--checkpoint-dir',
                                                  str(tmp_path / name)]!r}) == 0"
                      for name, args in refs.items())
    p = subprocess.run([sys.executable, "-c", f"from distillax import cli; {calls}"],
                       capture_output=True, text=True, timeout=300, env=_env(tmp_path, "none"))
    assert p.returncode == 0, p.stderr[-3000:]
    reference = {name: _results(str(tmp_path / name)) for name in refs}

    env = _env(tmp_path, "cache-True")
    # issue 23's first sequence: a changed coefficient, run twice
    first, _ = train(coef, env)
    assert "from the cache" not in first
    line, result = train(coef, env)
    assert "(2 programs from the cache)" in line and result == reference["coef"]
    line, _ = train(sweep, env)  # another task, and a sweep: compiled
    assert "from the cache" not in line
    line, result = train(other, env)
    assert "(2 programs from the cache)" in line and result == reference["other"]

    # the store alone, JAX's cache off: a copy of that store (its sealed programs and its
    # secret) serves the coefficient run in a process that compiles nothing
    store = os.path.join(tmp_path, "cache-True", "distillax", "jax", cache.PROGRAMS)
    shutil.copytree(store, os.path.join(tmp_path, "store-alone", "distillax", "jax",
                                        cache.PROGRAMS))
    line, result = train(coef, _env(tmp_path, "store-alone", jax_cache=False))
    assert "(2 programs from the cache)" in line and result == reference["coef"]

    # issue 23's second sequence: the store emptied, JAX's cache kept, then two runs. JAX's
    # cache serves the programs, which are therefore not stored (they could not run once
    # loaded): the runs compile through JAX's cache, and neither crashes
    shutil.rmtree(store)
    for _ in range(2):
        line, result = train(coef, env)
        assert "from the cache" not in line and result == reference["coef"]
        assert not os.path.isdir(store) or not [f for f in os.listdir(store)
                                                 if f.endswith(".bin")]


def test_the_cap_is_read_from_the_environment(monkeypatch):
    for text, expected in [("", 2 << 30), ("1024", 1024), ("2G", 2 << 30), ("500M", 500 << 20),
                           ("1.5k", 1536), ("64MiB", 64 << 20), ("0", 0)]:
        monkeypatch.setenv(cache.ENV_BYTES, text)
        assert cache.max_bytes() == expected, text
    for text in ["lots", "-1", "2 G B", "1e9"]:
        monkeypatch.setenv(cache.ENV_BYTES, text)
        with pytest.raises(ConfigError, match=f"{cache.ENV_BYTES} = '{text}' is invalid"):
            cache.max_bytes()


def test_a_bad_cap_stops_the_run_before_anything_is_built(tmp_path, monkeypatch, capsys):
    from distillax import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv(cache.ENV_BYTES, "lots")
    monkeypatch.setattr("distillax.run.build_model", lambda c: pytest.fail("built"))
    assert cli.main(TINY) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: environment variable {cache.ENV_BYTES} = 'lots' is invalid: a size "
                   "in bytes such as 2G, 500M or 1073741824 (0: store nothing)"]


def test_the_cache_command_shows_and_empties_the_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = tmp_path / "distillax" / "jax"
    (root / cache.PROGRAMS).mkdir(parents=True)
    (root / "jit_f-0123-cache").write_bytes(b"x" * 1000)
    (root / cache.PROGRAMS / "k.bin").write_bytes(b"y" * 3000)
    assert cache.main([]) == 0
    shown = capsys.readouterr().out
    assert f"{root}: 2 files, 0.0 MiB (program store: 1 files, 0.0 MiB)" in shown
    assert "python -m distillax.cache clear" in shown
    assert cache.main(["clear"]) == 0
    assert capsys.readouterr().out.strip() == f"removed {root}: 2 files, 0.0 MiB"
    assert not root.exists()
    assert cache.main(["clear"]) == 0  # nothing there: nothing to do
    assert cache.main(["purge"]) == 2
