"""A tiny smoke run of every experiment script (the real runs: `make experiments`), and the
table arithmetic of experiments/harness.py on hand-made summaries."""

import json
import math
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from distillax import Config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

# Each table's script is `harness.main(task)` (checked below for each): the harness's whole
# path is smoke-run once, on pendulum (the cheapest compile); every method is trained by
# tests/test_methods.py, and every row of every script is validated and built (below,
# without compiling).
SMOKE = {"cartpole": "central", "pendulum": "ppo-context", "pointgoal": "dnc",
         "fourrooms": "distral"}


# every table's task (harness.TABLES); the brax one is validated and built, not smoke-run: its
# script is harness.main like the others, and an MJX compile costs ~40 s
@pytest.mark.parametrize("task", [*sorted(SMOKE), "double-pendulum-physics"])
def test_every_row_of_every_script_validates_and_builds(task):
    from distillax import presets
    from distillax.config import validate
    from distillax.model import build_model

    if task == "double-pendulum-physics":
        pytest.importorskip("brax")
    names, harness = _harness()
    assert set(harness.TABLES) == {*SMOKE, "double-pendulum-physics"}
    assert (EXPERIMENTS / harness.script(task)).exists()
    base = presets.preset(task)
    base.pop("task")
    a = harness.parse(["--small"], base.pop("total_steps"))
    runs = harness.configs(task, base, a)
    assert [n for n, _ in runs] == names
    for _, config in runs:
        build_model(validate(config, num_devices=1))


@pytest.mark.parametrize("task", sorted(SMOKE))
def test_each_table_script_runs_the_harness_on_its_task(task, monkeypatch):
    _, harness = _harness()
    calls = []
    monkeypatch.setattr(harness, "main", lambda *a, **kw: calls.append(a))
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    runpy.run_path(str(EXPERIMENTS / f"{task}.py"), run_name="__main__")
    assert calls == [(task,)]


def test_experiment_script_writes_its_table_and_curves(tmp_path, monkeypatch, compile_cache):
    task = "pendulum"
    methods = SMOKE[task].split(",")
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    monkeypatch.setattr(sys, "argv", [f"{task}.py", "--small", "--total-steps", "256",
                                      "--seeds", "2", "--methods", SMOKE[task],
                                      "--out", str(tmp_path)])
    runpy.run_path(str(EXPERIMENTS / f"{task}.py"), run_name="__main__")
    result = json.loads((tmp_path / f"{task}.json").read_text())
    rows = result["rows"]
    names, _ = _harness()
    assert [r["method"] for r in rows] == [m for m in names if m in methods]
    for r in rows:
        assert r["config"]["task"] == task and r["config"]["seeds"] == 2
        assert len(r["central_greedy_seeds"]) == 2
        assert all(math.isfinite(v) for v in r["central_greedy_seeds"])
        assert any("central_return_seeds" in p for p in r["curve"])
        is_ppo = r["config"]["method"] == "ppo"
        assert (r["gap_diff"] is None) == is_ppo
        assert r["config"]["teacher_sees_context"] == (r["method"] == "ppo-context")
    md = (tmp_path / f"{task}.md").read_text()
    assert all(f"| {m} |" in md for m in methods)
    assert f"--methods {SMOKE[task]}" in result["command"]
    assert (tmp_path / f"{task}.png").read_bytes()[:4] == b"\x89PNG"


def _harness():
    """(the row names in table order, the module experiments/harness.py)."""
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        import harness
    finally:
        sys.path.remove(str(EXPERIMENTS))
    return [n for n, _ in harness.RUNS], harness


def _summary(central, teachers):
    """A two-seed summary as `train` returns it (only what `row` reads)."""
    final = {}
    for k, v in (("central_greedy", central), ("central_sampled", central),
                 ("teachers_greedy", teachers), ("teachers_sampled", teachers)):
        final[k], final[f"{k}_seeds"] = float(np.mean(v)), list(v)
    history = [{"env_steps": 10, "teacher_return": np.array([1.0, 3.0]),
                "teacher_return_seeds": np.array([1.0, 3.0]), "central_return": 5.0,
                "central_return_seeds": [4.0, 6.0]}]
    return SimpleNamespace(final=final, history=history, compile_s=1.0, train_s=2.0,
                           steps_per_s=3.0)


def test_row_gap_is_paired_by_seed_and_ratio_only_for_positive_returns():
    _, harness = _harness()
    config = Config(method="central", seeds=2)
    r = harness.row("central", config, _summary([400.0, 300.0], [500.0, 500.0]), 9.0)
    # per-seed gaps -100 and -200: mean -150, t_{0.975,1} = 12.706, sd = 70.71, /sqrt 2 = 50
    assert r["gap_diff"] == pytest.approx(-150.0)
    assert r["gap_diff_ci95"] == pytest.approx([-150 - 12.7062 * 50, -150 + 12.7062 * 50],
                                               rel=1e-4)
    assert r["gap_ratio"] == pytest.approx((0.8 + 0.6) / 2)
    assert r["curve"][0]["teacher_return"] == 2.0
    negative = harness.row("central", config, _summary([-3.0, -2.0], [-2.5, -2.5]), 9.0)
    assert negative["gap_ratio"] is None and negative["gap_diff"] == pytest.approx(0.0)
    ppo = harness.row("ppo-blind", config.replace(method="ppo"),
                     _summary([100.0, 200.0], [100.0, 200.0]), 9.0)
    assert ppo["gap_diff"] is None and ppo["gap_ratio"] is None
    assert "| ppo-blind | 150.0 [" in harness.table("cartpole", [r, ppo], "cmd", 1)


def test_merge_replaces_rows_by_name_keeps_table_order_and_both_commands():
    _, harness = _harness()
    old = {"task": "t", "command": "a", "rows": [{"method": "ppo-blind", "v": 1},
                                                 {"method": "central", "v": 2}]}
    new = {"task": "t", "command": "b", "rows": [{"method": "extra", "v": 3},
                                                 {"method": "ppo-blind", "v": 4}]}
    got = harness.merge(old, new, ["ppo-blind", "central", "extra"])
    assert got["command"] == "a && b"
    assert [(r["method"], r["v"]) for r in got["rows"]] == [("ppo-blind", 4), ("central", 2),
                                                            ("extra", 3)]


def _sensitivity(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import sensitivity

    return sensitivity


def test_sensitivity_members_take_curve_means_per_run_and_keep_final_intervals(monkeypatch):
    """2 values x 2 seeds: run r = k S + s. Held-out evaluations (per run) [1, 2, 3, 4] and
    [3, 4, 5, 8]: per-run curve means 2, 3, 4, 6, so value 0.1 has seeds (2, 3), mean 2.5,
    and value 1 has (4, 6), mean 5 with t_{0.975,1} 12.706 x sd 1.414 / sqrt 2 = 12.706."""
    sens = _sensitivity(monkeypatch)
    config = Config(method="central", seeds=2, sweep=(("coupling_coef", (0.1, 1.0)),))
    finals = [{"central_greedy": v, "central_greedy_ci95": [v - 1, v + 1],
               "central_greedy_seeds": [v, v], "teachers_greedy": 9.0,
               "teachers_greedy_ci95": [8.0, 10.0], "teachers_greedy_seeds": [9.0, 9.0]}
              for v in (10.0, 20.0)]
    history = [{"env_steps": 1}, {"central_return_seeds": [1.0, 2.0, 3.0, 4.0]},
               {"central_return_seeds": [3.0, 4.0, 5.0, 8.0]}]
    summary = SimpleNamespace(final={"members": finals}, history=history)
    got = sens.members(config, summary)
    assert [m["value"] for m in got] == [0.1, 1.0]
    assert [m["curve_mean_seeds"] for m in got] == [[2.0, 3.0], [4.0, 6.0]]
    assert got[0]["curve_mean"] == pytest.approx(2.5)
    assert got[1]["curve_mean_ci95"] == pytest.approx([5 - 12.7062, 5 + 12.7062], rel=1e-4)
    assert got[1]["central_greedy"] == 20.0 and got[1]["central_greedy_ci95"] == [19.0, 21.0]
    # the table compares each value with the default seed by seed: (3 - 1, 5 - 2) = (2, 3),
    # mean 2.5, half-width t_{0.975,1} 12.706 x sd 0.7071 / sqrt 2 = 6.353
    for m, seeds in zip(got, ([3.0, 5.0], [1.0, 2.0])):
        m["central_greedy_seeds"] = seeds
    md = sens.table({"command": "c", "seeds": 2, "sweeps": [
        {"task": "t", "method": "central", "field": "coupling_coef", "default": 1.0,
         "total_steps": 8, "wall_s": 1.0, "members": got}]})
    assert "| 0.1 | 10.0 [9.0, 11.0] | 2.5 [-3.9, 8.9] | 2.5 [" in md
    assert "| **1** | 20.0 [19.0, 21.0] | — | 5.0 [" in md
    assert sens.default_of("dnc", "coupling_coef") == 0.01
    assert sens.default_of("central", "distill_coef") == 1.0


def test_sensitivity_script_writes_its_tables_and_plot(tmp_path, monkeypatch, compile_cache):
    sens = _sensitivity(monkeypatch)
    result = sens.main(["--small", "--total-steps", "256", "--seeds", "2", "--tasks",
                        "pointgoal", "--sweeps", "3", "--out", str(tmp_path)])
    (s,) = result["sweeps"]
    assert (s["task"], s["method"], s["field"], s["default"]) == ("pointgoal", "central",
                                                                  "distill_coef", 1.0)
    assert [m["value"] for m in s["members"]] == [0.01, 0.1, 1.0, 10.0]
    assert all(len(m["central_greedy_seeds"]) == 2 for m in s["members"])
    assert json.loads((tmp_path / "sensitivity.json").read_text())["sweeps"][0]["field"] == \
        "distill_coef"
    md = (tmp_path / "sensitivity.md").read_text()
    assert "| **1** |" in md
    assert md.count(" | — | ") == 1  # the default's row has no difference with itself
    assert (tmp_path / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"


def test_wall_clock_is_compile_plus_every_seeds_steps_at_the_row_throughput():
    _, harness = _harness()
    r = {"config": {"seeds": 5}, "compile_s": 20.0, "steps_per_s": 100_000.0}
    # 200k steps per run x 5 seeds at 100k env-steps/s: 10 s after 20 s of compiling
    np.testing.assert_allclose(harness.wall_clock(r, [0, 200_000]), [20.0, 30.0])
    assert harness.script("double-pendulum-physics") == "double_pendulum_physics.py"


def _dividing(monkeypatch):
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import dividing

    return dividing


def test_welch_interval_by_hand(monkeypatch):
    """a = (0, 2), b = (1, 3): variances of the means 1 and 1, se = sqrt 2, Welch dof
    (1 + 1)^2 / (1 + 1) = 2, t_{0.975,2} = 4.3027: -1 -/+ 6.0849."""
    dv = _dividing(monkeypatch)
    d, lo, hi = dv.welch_ci95([0.0, 2.0], [1.0, 3.0])
    assert d == -1.0
    assert (lo, hi) == pytest.approx((-1 - 4.30265 * 2 ** 0.5, -1 + 4.30265 * 2 ** 0.5),
                                     rel=1e-5)
    assert dv.welch_ci95([1.0, 1.0], [0.0, 0.0]) == (1.0, 1.0, 1.0)  # no spread


def test_holm_correction_by_hand(monkeypatch):
    """p = (0.01, 0.04, 0.03, 0.005), m = 4. Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03,
    0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (never below the one before). At 0.05 the first
    and the last hold; uncorrected, all four would."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import protocol

    adjusted, holds = protocol.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert holds.tolist() == [True, False, False, True]
    adjusted, holds = protocol.holm([0.5, 0.9])  # 0.5 x 2 = 1.0; 0.9 x 1 -> 1.0 (capped)
    np.testing.assert_allclose(adjusted, [1.0, 1.0])
    assert not holds.any()


def test_welch_p_by_hand(monkeypatch):
    """a = (0, 2), b = (1, 3): t = -1 / sqrt 2, dof 2: p = 2 P(T_2 > 0.7071) = 0.5528 (the
    t_2 tail 1/2 - t / (2 sqrt(2 + t^2)) at t = 0.7071 is 0.2764)."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import protocol

    assert protocol.welch_p([0.0, 2.0], [1.0, 3.0]) == pytest.approx(0.552786, rel=1e-5)
    assert protocol.welch_p([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert protocol.welch_p([1.0, 1.0], [0.0, 0.0]) == 0.0


def test_dividing_marks_where_teachers_beat_the_context_aware_policy(tmp_path, monkeypatch):
    """Hand-made curves at 100k and 1M steps (5 seeds): the teachers of every divided method
    ahead by ~100 at 100k (an interval excluding 0: bold), level at 1M (not bold); at the end
    their held-out return is ahead by 20 (bold), their central policy's level."""
    dv = _dividing(monkeypatch)
    noise = np.asarray([-2.0, -1.0, 0.0, 1.0, 2.0])

    def row(method, early):
        curve = [{"env_steps": s, "teacher_return_seeds": list(v + noise),
                  "central_return_seeds": list(v + noise)}
                 for s, v in ((100_000, early), (1_000_000, 500.0))]
        return {"method": method, "curve": curve,
                "config": {"total_steps": 1_000_000, "seeds": 5},
                "central_greedy_seeds": list(500.0 + noise),
                "teachers_greedy_seeds": list(520.0 + noise),
                "gap_diff": None if method == "ppo-context" else -20.0}

    rows = [row("ppo-context", 200.0)] + [row(m, 300.0) for m in dv.DIVIDED]
    (tmp_path / "t.json").write_text(json.dumps({"task": "t", "command": "c", "rows": rows}))
    monkeypatch.setattr(dv, "FRACTIONS", (0.1, 1.0))
    md = dv.main(("t",), str(tmp_path))
    early, late = [ln for ln in md.splitlines() if ln.startswith("| 100,000")], \
        [ln for ln in md.splitlines() if ln.startswith("| 1,000,000")]
    assert len(early) == len(late) == 2  # training and held-out tables
    assert all(ln.count("**+100.0 [") == 3 for ln in early)
    assert all("**" not in ln and ln.count("+0.0 [") == 3 for ln in late)
    end = [ln for ln in md.splitlines() if ln.startswith(tuple(f"| {m} |" for m in dv.DIVIDED))]
    assert len(end) == 3
    assert all(ln.count("**+20.0 [") == 1 and ln.count(", +0.0 [") == 1 for ln in end)
    assert (tmp_path / "dividing.png").read_bytes()[:4] == b"\x89PNG"


def test_central_fit_writes_a_row_per_ratio_with_paired_gaps(tmp_path, monkeypatch,
                                                             compile_cache):
    """experiments/central_fit.py: one vmapped program per (task, schedule, epochs), a row
    per step-size ratio; a second call for other epochs adds rows, one for the same
    replaces them."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import central_fit

    argv = ["--tasks", "fourrooms", "--steps", "8192", "--seeds", "2", "--schedules",
            "constant", "--ratios", "1,2", "--out", str(tmp_path)]
    central_fit.main(argv)
    central_fit.main(argv)  # the same rows again: replaced, not added
    rows = json.loads((tmp_path / "central_fit.json").read_text())
    assert [(r["ratio"], r["central_lr"]) for r in rows] == [(1.0, 2.5e-3), (2.0, 5e-3)]
    assert all(len(r["central"]) == len(r["teachers"]) == 2 and not r["anneal"]
               for r in rows)
    table = (tmp_path / "central_fit.md").read_text().splitlines()
    gap = np.asarray(rows[1]["central"]) - np.asarray(rows[1]["teachers"])
    assert table[-1].startswith("| fourrooms | 8,192 | 2 | constant | 4 | 0.005 (2) |")
    assert table[-1].endswith(f"| {central_fit.interval(gap, 2)} |")
