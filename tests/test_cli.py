"""The training command line (`cli.py`): help from the field definitions, config files,
presets and sweeps. Nothing here trains or compiles."""

import dataclasses
import json
import re

import pytest

from distillax import methods, presets
from distillax.cli import _parser, config_from_args, read_config_file
from distillax.config import GROUPS, Config, ConfigError, help_text


def _help() -> str:
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "2000"  # one line per flag: argparse breaks long words at hyphens
    try:
        return " ".join(_parser().format_help().split())
    finally:
        os.environ.pop("COLUMNS")
        if old is not None:
            os.environ["COLUMNS"] = old


def test_help_describes_every_field_with_its_group_choices_and_default():
    text = _help()
    for g in GROUPS:
        assert f"config: {g}:" in text, g
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
        assert " ".join(help_text(f).split()) in text, f.name  # its description
    assert re.search(r"--method METHOD .*choices: independent, central, central-kl, "
                     r"central-clip, dnc, distral, distral2col, ppo; default: central", text)
    assert "--coupling-coef COUPLING_COEF" in text and "default: unset" in text


def test_help_reads_the_methods_defaults_from_their_specs():
    fields = {f.name: f for f in dataclasses.fields(Config)}
    alpha, divergence = help_text(fields["coupling_coef"]), help_text(fields["divergence"])
    # methods.py's specs, written out: alpha 0.01 for the KL couplings and DnC, 1 for the clip
    assert "default (0.01 for central, central-kl, dnc; 1.0 for central-clip; 0.0 otherwise)" \
        in alpha
    assert "auto: the method's (nll for distral, distral2col; kl otherwise)" in divergence
    # a method registered after import is listed, in --help too
    methods.register(methods.MethodSpec(name="toy", summary="a toy method", coupling_coef=0.5,
                                        divergence="mse"))
    try:
        assert "1.0 for central-clip; 0.5 for toy; 0.0 otherwise" in help_text(
            fields["coupling_coef"])
        assert "(nll for distral, distral2col; mse for toy; kl otherwise)" in help_text(
            fields["divergence"])
        assert "mse for toy" in _help()
    finally:
        del methods.METHODS["toy"]
    assert help_text(fields["coupling_coef"]) == alpha


def test_a_preset_is_what_the_experiments_train_and_round_trips():
    for name in ("cartpole", "pendulum", "pointgoal", "fourrooms"):
        c = config_from_args(["--preset", name])
        assert c == Config(**presets.preset(name)), name
        assert c.task == name
    # flags win over the preset
    c = config_from_args(["--preset", "pendulum", "--gamma", "0.9", "--method", "dnc"])
    assert (c.gamma, c.reward_scale, c.method) == (0.9, 0.1, "dnc")
    with pytest.raises(ConfigError, match="--preset 'nope' is invalid: one of"):
        config_from_args(["--preset", "nope"])


class _Trained(Exception):
    pass


def test_experiments_read_the_presets(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "experiments"))
    import harness

    def record(config, log):
        raise _Trained(config)

    monkeypatch.setattr(harness, "train", record)
    with pytest.raises(_Trained) as got:
        harness.main("pendulum", ["--methods", "central", "--seeds", "1"])
    c = got.value.args[0]
    # the preset's settings, at the tables' budget (half the preset's 1M)
    assert (c.reward_scale, c.gamma, c.ent_coef, c.total_steps) == (0.1, 0.95, 0.0, 500_000)
    assert c == Config(**presets.preset("pendulum")).replace(
        seeds=1, total_steps=500_000, eval_every=c.eval_every, log_every=c.log_every)


@pytest.mark.parametrize("kind", ["json", "toml"])
def test_config_files_set_fields_under_the_flags(tmp_path, kind):
    path = tmp_path / f"run.{kind}"
    if kind == "json":
        path.write_text(json.dumps({"method": "dnc", "hidden_sizes": [32, 32], "gamma": 0.97,
                                    "sweep": [["distill_coef", [0.5, 1.0]]]}))
    else:
        path.write_text('method = "dnc"\nhidden_sizes = [32, 32]\ngamma = 0.97\n'
                        'sweep = [["distill_coef", [0.5, 1.0]]]\n')
    c = config_from_args(["--config", str(path), "--gamma", "0.9"])
    assert (c.method, c.hidden_sizes, c.gamma) == ("dnc", (32, 32), 0.9)
    assert c.sweep == (("distill_coef", (0.5, 1.0)),)
    # a preset, then the file, then the flags
    c = config_from_args(["--preset", "pendulum", "--config", str(path)])
    assert (c.task, c.reward_scale, c.gamma) == ("pendulum", 0.1, 0.97)


def test_bad_config_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("method = \n")
    with pytest.raises(ConfigError, match="bad.toml' is not valid TOML"):
        read_config_file(str(bad))
    unknown = tmp_path / "u.json"
    unknown.write_text('{"nope": 1}')
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['nope'\]"):
        read_config_file(str(unknown))
    with pytest.raises(ConfigError, match="cannot be read"):
        read_config_file(str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match=".json or .toml"):
        read_config_file(str(tmp_path / "x.yaml"))
