"""`seeds = S` trains S runs in one program (vmap over the run key): seed s is exactly the
run with `seed + s` trained alone, and the reports carry per-seed values, mean and a 95%
Student-t interval."""

import jax
import numpy as np
import pytest

from distillax import Config, parallel, resume, train
from distillax.checkpoint import CheckpointError, restore_policies
from distillax.evaluation import make_evaluator, mean_ci95, report, run_policies
from distillax.model import build_model
from distillax.trainer import init_state, make_runner

SMALL = dict(num_envs=8, num_steps=16, total_steps=8 * 16 * 3, num_minibatches=2,
             update_epochs=2, hidden_sizes=(16,), kmeans_samples=1000, partitions=2,
             log_every=3, eval_every=3, eval_contexts=4, normalize_obs=True)


def test_mean_ci95_is_the_student_t_interval():
    # [1, 2, 3, 4]: mean 2.5, sample sd sqrt(5/3) = 1.290994, t_{0.975, 3} = 3.182446,
    # half width 3.182446 * 1.290994 / 2 = 2.054260.
    m, lo, hi = mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert m == pytest.approx(2.5)
    assert (lo, hi) == pytest.approx((2.5 - 2.054260, 2.5 + 2.054260), abs=1e-5)
    assert mean_ci95([7.0]) == (7.0, 7.0, 7.0)


def test_four_seeds_equal_four_separate_runs(tmp_path):
    # The multi-seed run stops after iteration 1 and resumes from its checkpoint, so this also
    # checks that a multi-seed checkpoint resumes exactly (the separate runs are uninterrupted).
    config = Config(seeds=4, seed=3, checkpoint_dir=str(tmp_path / "multi"), **SMALL)
    train(config, log=lambda _: None, stop_after=1)
    state, summary = resume(config.checkpoint_dir, log=lambda _: None)
    assert summary.start_iteration == 1
    assert jax.tree.leaves(state.params)[0].shape[0] == 4
    assert np.asarray(state.iteration).tolist() == [3, 3, 3, 3]
    final = summary.final
    assert final["seeds"] == 4 and len(final["per_seed"]) == 4
    # the mean and its Student-t interval of the per-seed values (t_{0.975, 3} = 3.182)
    per = np.asarray(final["central_greedy_seeds"])
    half = 3.1824463 * per.std(ddof=1) / 2.0
    assert final["central_greedy"] == pytest.approx(per.mean())
    assert final["central_greedy_ci95"] == pytest.approx([per.mean() - half, per.mean() + half])
    record = summary.history[-1]
    assert len(record["teacher_return_seeds"]) == 4 and len(record["central_return_seeds"]) == 4
    # The 4 separate runs, each as `train(Config(seed=3 + s))` runs it (init from its key,
    # the compiled chunk, held-out evaluation with key seed + 1), sharing one compilation.
    single = Config(seed=3, **SMALL)
    model = build_model(single)
    mesh = parallel.make_mesh(1)
    runner = make_runner(model, init_state(model, jax.random.PRNGKey(3)), mesh, 3)
    program = None  # one evaluation program for the 4: contexts and keys are its arguments
    for s in range(4):
        alone = runner.step(runner.place(init_state(model, jax.random.PRNGKey(3 + s))),
                            runner.count(3))[0]
        got = jax.tree.map(lambda x, s=s: np.asarray(x[s]), state.params)
        diff = jax.tree.map(lambda a, b: np.max(np.abs(a - np.asarray(b))), got, alone.params)
        assert max(jax.tree.leaves(diff)) <= 1e-5, (s, diff)
        alone_model = build_model(single.replace(seed=3 + s))  # its held-out key: seed + 1
        evaluator = make_evaluator(alone_model)
        evaluator.program = program
        report_s = report(evaluator, run_policies(alone_model, alone))
        program = evaluator.program
        for k in ("central_greedy", "central_sampled", "teachers_greedy", "teachers_sampled"):
            assert final["per_seed"][s][k] == pytest.approx(report_s[k], abs=1e-4), (s, k)
            assert final[f"{k}_seeds"][s] == final["per_seed"][s][k]
        assert record["central_return_seeds"][s] == pytest.approx(
            report_s["central_greedy"], abs=1e-4)
    # The checkpoint holds every seed; evaluation picks one explicitly.
    with pytest.raises(CheckpointError, match="4 seeds"):
        restore_policies(str(tmp_path / "multi"))
    _, policies = restore_policies(str(tmp_path / "multi"), seed=1)
    np.testing.assert_allclose(jax.tree.leaves(policies.central)[0],
                               jax.tree.leaves(state.params.central)[0][1], atol=1e-6)

