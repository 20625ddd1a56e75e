"""The library run (`run.py`): one compiled training program per run, the persistent
compilation cache, the evaluation cadence and the run's files."""

import jax
import numpy as np
import pytest

from distillax import Config
from distillax.run import EVAL_SHARE, eval_interval, train

SMALL = dict(num_envs=8, num_steps=8, num_minibatches=2, update_epochs=1, hidden_sizes=(8,),
             kmeans_samples=500, eval_contexts=4, partitions=2, context_candidates=8)


class Compiles:
    """XLA compilations by function name (each compiled or loaded from the persistent cache),
    and the persistent cache's hits and misses: `with COMPILES as c:` records into a new `c`.
    (JAX's listeners cannot be removed, so one is registered for the whole module.)"""

    class Record:
        def __init__(self):
            self.names: list[str] = []
            self.hits = self.misses = 0

    def __init__(self):
        self.record = None
        jax.monitoring.register_event_duration_secs_listener(self._duration)
        jax.monitoring.register_event_listener(self._event)

    def _duration(self, event, duration, **kw):
        if self.record and event == "/jax/core/compile/backend_compile_duration":
            self.record.names.append(kw.get("fun_name", ""))

    def _event(self, event, **kw):
        if self.record and event == "/jax/compilation_cache/cache_hits":
            self.record.hits += 1
        if self.record and event == "/jax/compilation_cache/cache_misses":
            self.record.misses += 1

    def __enter__(self):
        self.record = self.Record()
        return self.record

    def __exit__(self, *exc):
        self.record = None


COMPILES = Compiles()


def test_a_run_whose_length_is_not_a_multiple_of_log_every_compiles_training_once(
        jax_cache_off):
    # 7 iterations in calls of 3, 3 and 1: the last call runs in the same program, with only
    # its first iteration live
    config = Config(total_steps=8 * 8 * 7, log_every=3, eval_every=3, **SMALL)
    with COMPILES as c:
        state, summary = train(config, log=lambda _: None, compile_cache=None)
    assert c.names.count("jit(train_chunk)") == 1, c.names
    assert c.names.count("jit(run)") == 1, c.names  # the evaluation program, once too
    assert int(state.iteration) == 7
    assert [r["iteration"] for r in summary.history] == [3, 6, 7]
    # the tail's record is its live iteration's, not a skipped (all-zero) one
    assert np.all(np.asarray(summary.history[-1]["entropy"]) > 0)
    assert [("central_return" in r) for r in summary.history] == [True, True, True]


def test_evaluations_keep_their_own_interval_whatever_the_checkpoint_interval():
    # evaluations at multiples of eval_every (3) and at the end; checkpoints every 5 must
    # not move them (the two cadences once shared a variable). A segment that stops before
    # its first evaluation compiles no evaluation program.
    config = Config(total_steps=8 * 8 * 6, log_every=1, eval_every=3, checkpoint_every=5,
                    **SMALL)
    with COMPILES as c:
        _, early = train(config, log=lambda _: None, compile_cache=None, stop_after=2)
    assert "jit(run)" not in c.names and "jit(train_chunk)" in c.names
    _, summary = train(config, log=lambda _: None, compile_cache=None)
    assert [("central_return" in r) for r in summary.history] == [False, False, True, False,
                                                                  False, True]


def test_the_persistent_cache_serves_a_second_run_with_the_same_results(tmp_path,
                                                                        jax_cache_off):
    from jax.experimental.compilation_cache import compilation_cache

    from distillax.cache import use_compile_cache

    config = Config(total_steps=8 * 8 * 3, log_every=2, **SMALL)
    use_compile_cache(str(tmp_path / "cache"))  # what train(compile_cache=DIR) does
    compilation_cache.reset_cache()  # JAX sets its cache up once per process otherwise
    lines1, lines2 = [], []
    with COMPILES as first:
        state1, s1 = train(config, log=lines1.append, compile_cache=None)
    with COMPILES as second:
        state2, s2 = train(config, log=lines2.append, compile_cache=None)
    assert {"jit(train_chunk)", "jit(run)"} <= set(first.names) and first.misses >= 3
    assert "from the cache" not in lines1[0]
    # the second run loads training and evaluation whole from the program cache (neither
    # traced nor compiled), and compiles nothing else (the init programs are in memory here;
    # in a new process they would come from JAX's cache)
    assert "jit(train_chunk)" not in second.names and "jit(run)" not in second.names
    assert "compiled in" in lines2[0] and "(2 programs from the cache)" in lines2[0]
    assert second.misses == 0, (second.misses, second.names)
    for a, b in zip(jax.tree.leaves(state1), jax.tree.leaves(state2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert s1.final["central_greedy_per_context"] == s2.final["central_greedy_per_context"]


def test_auto_evaluation_interval_keeps_evaluation_within_its_share():
    # 64 contexts x 500 steps = 32,000 env steps per evaluation; at 8,192 env steps per
    # iteration a quarter of training is reached after 32,000 / (0.25 * 8,192) = 15.6 -> 16
    assert EVAL_SHARE == 0.25
    assert eval_interval(Config(), 500) == 16
    assert eval_interval(Config(num_envs=4, num_steps=128, partitions=1, method="ppo"),
                         500) == 250
    assert eval_interval(Config(eval_every=5), 500) == 5


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_stop_after_must_be_a_positive_iteration(bad):
    from distillax.config import ConfigError

    with pytest.raises(ConfigError, match="stop_after"):
        train(Config(**SMALL, total_steps=8 * 8 * 2), log=lambda _: None, stop_after=bad)


def test_each_sweep_member_is_the_single_run_of_its_config(tmp_path, compile_cache):
    """A 2-member sweep (stopped and resumed) against each member's own run: params within
    1e-5 (vmapped and unbatched float reductions may round differently), held-out returns
    equal; the checkpoint serves each member to load_policy and the evaluator. On the
    module's persistent cache (tests/conftest.py): the resume and the second member's run
    load their programs from the store, as a user's would (the learning rates still train
    differently: checked below)."""
    from distillax import resume
    from distillax.checkpoint import load
    from distillax.reporting import evaluate_checkpoint

    base = Config(total_steps=8 * 8 * 3, log_every=1, checkpoint_dir=str(tmp_path / "sweep"),
                  sweep=(("learning_rate", (1e-3, 3e-3)),), **SMALL)
    assert base.num_runs == 2 and [m.learning_rate for m in base.members] == [1e-3, 3e-3]
    train(base, log=lambda _: None, stop_after=2, compile_cache=None)
    state, summary = resume(base.checkpoint_dir, log=lambda _: None, compile_cache=None)
    members = summary.final["members"]
    assert [m["values"] for m in members] == [{"learning_rate": 1e-3}, {"learning_rate": 3e-3}]
    moved = []
    for k, member in enumerate(base.members):
        alone, s = train(member.replace(checkpoint_dir=""), log=lambda _: None,
                         compile_cache=None)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(alone.params)):
            np.testing.assert_allclose(np.asarray(a)[k], np.asarray(b), atol=1e-5, rtol=0)
        assert members[k]["central_greedy_per_context"] == s.final["central_greedy_per_context"]
        np.testing.assert_array_equal(np.asarray(state.hparams["learning_rate"])[k],
                                      np.float32(member.learning_rate))
        moved.append(np.asarray(jax.tree.leaves(alone.params.teacher)[0]))
    assert not np.allclose(moved[0], moved[1])  # the two learning rates trained differently
    _, _, policies = load(base.checkpoint_dir, member=1)
    assert float(policies.hparams["learning_rate"]) == np.float32(3e-3)
    np.testing.assert_array_equal(jax.tree.leaves(policies.central)[0],
                                  np.asarray(jax.tree.leaves(state.params.central)[0])[1])
    rep = evaluate_checkpoint(base.checkpoint_dir, str(tmp_path / "eval"), contexts=8,
                              resolution=2, plots=False, member=1)
    assert rep["member"] == 1
    assert (tmp_path / "sweep" / "sweep.md").read_text().count("\n| ") == 3  # header + 2


def test_sweep_flags_parse_into_the_config():
    from distillax.cli import config_from_args
    from distillax.config import ConfigError

    c = config_from_args(["--sweep", "coupling_coef=0.001,0.01", "--sweep",
                          "distill-coef=0.5,1"])
    assert c.sweep == (("coupling_coef", (0.001, 0.01)), ("distill_coef", (0.5, 1.0)))
    assert len(c.members) == 4 and c.members[1].distill_coef == 1.0
    with pytest.raises(ConfigError, match="`sweep`"):
        config_from_args(["--sweep", "coupling_coef"])


def test_a_distillation_tail_freezes_the_teachers_and_trains_the_central_policy():
    """`independent` (teachers never read the central policy): 2 iterations, then a tail of 2
    more. The teachers end exactly where a run without the tail ends; the central policy
    went on learning; the tail's env steps are counted."""
    base = Config(method="independent", total_steps=2 * 64, **SMALL)
    tail = base.replace(distill_tail_steps=2 * 64)
    plain_state, _ = train(base, log=lambda line: None, compile_cache=None)
    lines = []
    tail_state, summary = train(tail, log=lines.append, compile_cache=None)
    assert "iterations=4 (64 env steps each; the last 2 with the teachers frozen)" in lines[0]
    assert int(tail_state.iteration) == 4 and summary.history[-1]["env_steps"] == 4 * 64
    for a, b in zip(jax.tree.leaves((plain_state.params.teacher, plain_state.teacher_stats)),
                    jax.tree.leaves((tail_state.params.teacher, tail_state.teacher_stats))):
        np.testing.assert_array_equal(a, b)
    moved = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in
             zip(jax.tree.leaves(plain_state.params.central),
                 jax.tree.leaves(tail_state.params.central))]
    assert max(moved) > 1e-4


@pytest.mark.parametrize("changes, why", [
    (dict(method="ppo"), "0 for method `ppo`"),
    (dict(method="distral2col"), "0 for method `distral2col`"),
    (dict(distill_tail_steps=100), "a multiple of num_envs x num_steps = 64")])
def test_a_tail_needs_a_central_policy_of_its_own_and_whole_iterations(changes, why):
    from distillax.config import ConfigError, validate

    with pytest.raises(ConfigError, match="`distill_tail_steps`.*" + why.replace("`", ".")):
        validate(Config(**{**SMALL, "distill_tail_steps": 128, **changes}))
