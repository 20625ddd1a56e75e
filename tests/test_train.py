"""End-to-end: the sharded step on 4 devices equals 1 device, a short seeded run learns,
and the command line prints its progress and fails clearly on bad input."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from distillax import Config, train
from distillax.config import ConfigError

HERE = os.path.dirname(__file__)


# central-clip: its coupling (pmean-ed clipped ratio terms), with both roles recurrent (the
# central ratio along recurrent states); dnc: the cross passes on a row subsample, with a
# recurrent central policy (time rows of whole-sequence minibatches). The feed-forward time
# split is test_parallel's two-seed check. One process for both (start-up once).
MULTIDEVICE_METHODS = ("central-clip:gru", "dnc:central-gru")


def test_update_on_4_simulated_devices_equals_1_device():
    env = dict(os.environ)  # (multidevice_check.py adds its device count to XLA_FLAGS)
    out = subprocess.run([sys.executable, os.path.join(HERE, "multidevice_check.py"),
                          ",".join(MULTIDEVICE_METHODS)],
                         capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()[-len(MULTIDEVICE_METHODS):]
    results = [json.loads(line) for line in lines]
    assert [r["method"] for r in results] == list(MULTIDEVICE_METHODS)
    for result in results:
        assert result["devices"] == 4
        assert result["max_abs_diff"] <= 1e-5, result
        assert result["moved"] > 1e-4, result  # the runs trained: equal, not just untouched


def test_short_seeded_run_learns():
    # Random play in cartpole lasts ~20 steps. 160k env steps (20 iterations) of the default
    # experiment bring the teachers past 150 and the distilled central policy past 100 on
    # held-out contexts (measured: teachers ~260, central ~215 greedy at seed 0).
    config = Config(total_steps=163_840, eval_every=20, log_every=10, seed=0)
    lines = []
    state, summary = train(config, log=lines.append)
    final = summary.history[-1]
    assert np.mean(final["teacher_return"]) > 150, final
    assert summary.final["central_greedy"] > 100, summary.final
    assert any("central policy held-out return" in line for line in lines)
    assert int(state.iteration) == config.num_iterations


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "distillax.train", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_cli_prints_progress_and_held_out_return(tmp_path):
    out = _cli("--total-steps", "16384", "--num-envs", "16", "--num-steps", "64",
               "--log-every", "4", "--eval-contexts", "8", "--checkpoint-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "steps/s" in out.stdout
    assert "central policy held-out return over 8 contexts" in out.stdout
    assert "compile time" in out.stdout
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert records[-1]["iteration"] == 16
    assert len(records[-1]["teacher_return"]) == 4
    # honest names: a divergence's loss and the method's coupling term, not "kl" for all
    assert {"distill_loss", "couple", "central_log_ratio"} <= set(records[-1])
    assert not {"distill_kl", "couple_kl"} & set(records[-1])
    # the central policy's fit, at every held-out evaluation and in the final report
    evaluated = [r for r in records if "central_return" in r]
    fit = [f"{m}_{s}" for m in ("kl", "action_gap")
           for s in ("teacher_greedy", "teacher_sampled", "central_greedy")]
    for r in evaluated:  # one seed: kept is the record's own returns on the random scale
        assert all(len(r[k]) == 4 for k in fit)
        floor = r["random_return"]
        assert r["kept"] == pytest.approx((r["central_return"] - floor)
                                          / (r["teachers_heldout_return"] - floor), rel=1e-5)
    assert re.search(r"central held-out return +[\d.-]+ \(greedy\), keeps [\d.-]+ of its "
                     "teachers'", out.stdout)
    results = json.load(open(tmp_path / "results.json"))
    assert set(fit) | {"kept", "random_return", "central_greedy_per_context"} <= set(results)
    lines = out.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("the central policy keeps"))
    assert [line.split(":")[0] for line in lines[at + 1:at + 4]] == [
        "  teacher greedy episodes", "  teacher sampled episodes", "  central greedy episodes"]


@pytest.mark.parametrize("args, field", [
    (["--method", "nope"], "method"),
    (["--num-envs", "30"], "num_envs"),
    (["--hidden-sizes", "64,x"], "hidden_sizes"),
    (["--learning-rate", "-1"], "learning_rate"),
])
def test_cli_rejects_bad_input_with_the_field_name(args, field, capsys):
    # in this process: the command line's own function, its exit code and its one line (a
    # process per case cost a start-up each; the CLI tests above run the real command)
    from distillax import cli

    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"`{field}`" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_library_validates_before_compiling():
    with pytest.raises(ConfigError, match="num_minibatches"):
        train(Config(num_steps=10, num_minibatches=4))
