"""Config validation, property-based: hypothesis draws configs across the valid and the invalid
space. Every invalid one is rejected by `validate` with a `ConfigError` naming the offending
field, and nothing is compiled on the way; every valid one passes and builds its model (a few
also build their initial train state).

Invalid configs are a valid one with one defect: one field given a value of a wrong type or
out of range (`BAD_VALUES`, one strategy per rule of `config.FIELD_RULES`), or a combination
broken (`BREAKERS`: divisibility, partitions vs contexts, incompatible flags).
"""

import collections
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from distillax import envs, methods
from distillax.checkpoint import RESUME_MAY_CHANGE
from distillax.config import (
    ACTIVATIONS,
    DIVERGENCES,
    FIELD_RULES,
    GROUPS,
    MEMORIES,
    PARTITIONERS,
    SCHEDULES,
    WANDB_MODES,
    Config,
    ConfigError,
    _empty_grid_cells,
    fields_with,
    leaf,
    leaf_fields,
    static,
    validate,
)
from distillax.envs import make_task, register
from distillax.model import build_model
from distillax.programs import HOST_ONLY
from distillax.trainer import init_run_state

SHIPPED = ("cartpole", "pendulum", "pointgoal", "fourrooms")
METHODS = methods.names()
SPACES = {name: make_task(name).space for name in SHIPPED}
CASES = collections.Counter()  # what ran, reported by test_report_case_counts
SETTINGS = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def warm_tasks():
    """Build each shipped task once: building one runs (and compiles) a few small array ops,
    and `validate` caches the built task, so later validations compile nothing."""
    for name in SHIPPED:
        check(Config(task=name, partitioner="kmeans", partitions=1, num_envs=8))


class CompileCounter:
    """Counts XLA compilations while active (jax.monitoring's backend-compile events)."""

    def __init__(self):
        self.count = 0
        self.active = False
        jax.monitoring.register_event_duration_secs_listener(self._on)

    def _on(self, name, duration, **kw):
        if self.active and name == "/jax/core/compile/backend_compile_duration":
            self.count += 1


COMPILES = CompileCounter()


def check(config: Config, num_devices: int | None = 1) -> None:
    """Everything a run checks before it builds a model: the config's own rules, then the
    task's (where the task is built)."""
    validate(config, num_devices=num_devices)
    envs.build(config)


def _validate_counting_compiles(config: Config) -> None:
    COMPILES.active = True
    try:
        check(config)
    finally:
        COMPILES.active = False


# --- valid configs --------------------------------------------------------------------------

positive_float = st.floats(1e-6, 10.0)
coef = st.floats(0.0, 10.0)
unit = st.floats(0.0, 1.0)


@st.composite
def valid_configs(draw) -> Config:
    task = draw(st.sampled_from(SHIPPED))
    space = SPACES[task]
    method = draw(st.sampled_from(METHODS))
    spec = methods.get(method)
    partitioners = ["kmeans", "grid"] + (["tasks"] if space.tasks and not spec.single_teacher
                                         else [])
    partitioner = draw(st.sampled_from(partitioners))
    grid_shape = ()
    if partitioner == "tasks":
        partitions = len(space.tasks)
    elif partitioner == "grid":
        grid_shape = tuple(draw(st.lists(st.integers(1, 2), min_size=space.dim,
                                         max_size=space.dim)))
        if _empty_grid_cells(space, grid_shape):
            grid_shape = (1,) * space.dim
        partitions = math.prod(grid_shape)
    else:
        most = len(space.tasks) if space.tasks else 6
        partitions = draw(st.integers(1, most))
    if spec.single_teacher and partitioner == "grid":
        grid_shape = (1,) * space.dim  # one teacher: one cell
        partitions = 1
    P = 1 if spec.single_teacher else partitions
    minibatches = draw(st.integers(1, 4))
    num_envs = P * draw(st.integers(1, 3))
    num_steps = minibatches * draw(st.integers(1, 8))
    epochs = draw(st.integers(1, 4))
    teacher_sees, central_sees = draw(st.booleans()), draw(st.booleans())
    reset_every = 0
    if spec.reset_allowed and draw(st.booleans()):
        reset_every = draw(st.integers(1, 5))
        central_sees = teacher_sees
    checkpoint_dir = draw(st.sampled_from(["", "runs/x"]))
    return Config(
        task=task, method=method, partitioner=partitioner, partitions=partitions,
        grid_shape=grid_shape, kmeans_samples=draw(st.integers(partitions, 2000)),
        context_candidates=draw(st.integers(1, 64)), teacher_sees_context=teacher_sees,
        central_sees_context=central_sees, normalize_obs=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)), seeds=draw(st.integers(1, 4)),
        num_envs=num_envs, num_steps=num_steps,
        total_steps=num_envs * num_steps * draw(st.integers(1, 5)), update_epochs=epochs,
        num_minibatches=minibatches, num_devices=draw(st.sampled_from([0, 1])),
        hidden_sizes=tuple(draw(st.lists(st.integers(1, 32), min_size=1, max_size=3))),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        learning_rate=draw(positive_float), central_learning_rate=draw(positive_float),
        anneal_lr=draw(st.booleans()), max_grad_norm=draw(positive_float),
        gamma=draw(unit), gae_lambda=draw(unit), clip_eps=draw(positive_float),
        vf_coef=draw(coef), ent_coef=draw(coef), coupling_coef=draw(st.none() | coef),
        central_clip_eps=draw(positive_float),
        distill_coef=draw(coef), distill_coef_end=draw(coef),
        distral_alpha=draw(st.floats(0.0, 0.99)),
        distral_beta=draw(positive_float), divergence=draw(st.sampled_from(DIVERGENCES)),
        distill_schedule=draw(st.sampled_from(SCHEDULES)),
        distill_epochs=draw(st.integers(0, epochs)), reset_every=reset_every,
        cross_steps=draw(st.integers(0, num_steps // minibatches)),
        feature_coef=draw(st.sampled_from([0.0, 0.01, 1.0])) if spec.has_central else 0.0,
        log_every=draw(st.integers(1, 10)), eval_contexts=draw(st.integers(1, 64)),
        eval_every=draw(st.integers(0, 10)), checkpoint_dir=checkpoint_dir,
        checkpoint_every=draw(st.integers(1, 100)), max_to_keep=draw(st.integers(1, 5)),
        tensorboard=bool(checkpoint_dir) and draw(st.booleans()))


# --- one defect each ------------------------------------------------------------------------

wrong_type = st.sampled_from([None, "7", 2.5, [1], {"a": 1}, b"x"])
not_a_bool = st.sampled_from([0, 1, "True", "false", None, 1.0])
bad_int_positive = st.integers(max_value=0) | st.sampled_from([True, 1.5, "8", None])
bad_int_nonneg = st.integers(max_value=-1) | st.sampled_from([True, False, 0.5, "0", None])
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
bad_positive = st.floats(max_value=0.0) | non_finite | st.sampled_from([True, "1e-3", None])
bad_nonneg = (st.floats(max_value=-1e-9, allow_infinity=False) | non_finite
              | st.sampled_from([False, "0.1", None]))
bad_unit = (st.floats(1.0000001, 1e9) | st.floats(-1e9, -1e-9) | non_finite
            | st.sampled_from([True, "0.9"]))
bad_tuple = (st.sampled_from([[64], [64, 64], (0,), (-1, 8), (8.0,), (True,), ("8",), "64,64",
                              64, None]))


def _bad_name(valid):
    return (st.text(max_size=12).filter(lambda s: s not in valid)
            | st.sampled_from([None, 1, ("ppo",)]))


# One strategy per field, by the kind of value it holds; each `FIELD_RULES` field has one.
BAD_VALUES = {
    "task": _bad_name(SHIPPED), "method": _bad_name(METHODS),
    "partitioner": _bad_name(PARTITIONERS), "divergence": _bad_name(DIVERGENCES),
    "distill_schedule": _bad_name(SCHEDULES), "activation": _bad_name(ACTIVATIONS),
    "teacher_memory": _bad_name(MEMORIES), "central_memory": _bad_name(MEMORIES),
    "wandb_mode": _bad_name(WANDB_MODES),
    "wandb_project": st.sampled_from([None, 7, b"p"]), "wandb_name": st.sampled_from([None, 7]),
    "seed": st.integers(max_value=-1) | st.integers(min_value=2**31) | wrong_type,
    "num_devices": bad_int_nonneg, "distill_epochs": bad_int_nonneg,
    "reset_every": bad_int_nonneg, "eval_every": bad_int_nonneg,
    "cross_steps": bad_int_nonneg, "distill_tail_steps": bad_int_nonneg,
    "noise_every": bad_int_nonneg,
    "central_learning_rate": (st.floats(max_value=0.0, allow_infinity=False) | non_finite
                              | st.sampled_from([False, "0.1"])),
    "noise_scale": (st.floats(max_value=0.0, allow_infinity=False) | non_finite
                    | st.sampled_from([False, "2"])),
    "sweep": st.sampled_from([[("gamma", (0.5,))], (("num_envs", (8,)),), (("gamma", ()),),
                              (("gamma", (0.5,)), ("gamma", (0.9,))), (("gamma", (2.0,)),),
                              (("coupling_coef", (None,)),), (("nope", (1.0,)),), "gamma=1"]),
    "log_every": bad_int_nonneg, "checkpoint_every": bad_int_nonneg,
    "checkpoint_dir": st.sampled_from([None, 0, b"runs", ["r"]]),
    "hidden_sizes": bad_tuple | st.just(()), "grid_shape": bad_tuple,
    "gamma": bad_unit, "gae_lambda": bad_unit, "distral_alpha": bad_unit,
    "coupling_coef": (st.floats(max_value=-1e-9, allow_infinity=False) | non_finite
                      | st.sampled_from([False, "0.1"])),
}
# The fields of a rule share its strategy: the rule holding each key field.
for key, strategy in {"partitions": bad_int_positive, "anneal_lr": not_a_bool,
                      "learning_rate": bad_positive, "vf_coef": bad_nonneg}.items():
    BAD_VALUES.update({f: strategy for names, _, _ in FIELD_RULES if key in names
                       for f in names})


def _breakers(c: Config) -> list[tuple[frozenset, dict]]:
    """Ways to break a combination of valid config `c`: (fields the error may name, changes)."""
    P = c.partitions
    out = [
        ({"num_minibatches"}, dict(num_minibatches=c.num_steps + 1)),
        ({"total_steps"}, dict(total_steps=c.steps_per_iteration - 1)),
        ({"distill_epochs"}, dict(distill_epochs=c.update_epochs + 1)),
        ({"reset_every"}, dict(method="distral2col", reset_every=2)),
        ({"reset_every"}, dict(reset_every=3, method="independent",
                               teacher_sees_context=not c.central_sees_context)),
        ({"partitions"}, dict(kmeans_samples=c.partitions - 1)) if c.partitions > 1 else None,
        ({"tensorboard"}, dict(tensorboard=True, checkpoint_dir="")),
        ({"cross_steps"}, dict(cross_steps=c.num_steps // c.num_minibatches + 1)),
        ({"feature_coef"}, dict(method="ppo", feature_coef=0.01, partitioner="kmeans",
                                grid_shape=(), reset_every=0)),
        ({"distill_tail_steps"}, dict(distill_tail_steps=c.steps_per_iteration + 1)),
        ({"distill_tail_steps"}, dict(method="ppo", distill_tail_steps=c.steps_per_iteration,
                                      partitioner="kmeans", grid_shape=(), reset_every=0,
                                      feature_coef=0.0)),
        # noise injection: one env in 1 (none left to the teachers), a pattern the cell's
        # envs cannot hold, the noisy action as the label, no central network of its own
        ({"noise_every"}, dict(noise_every=1)),
        ({"noise_every"}, dict(noise_every=c.envs_per_partition + 1)),
        ({"noise_every"}, dict(noise_every=c.envs_per_partition, divergence="nll")),
        ({"noise_every"}, dict(noise_every=c.envs_per_partition, method="ppo",
                               partitioner="kmeans", grid_shape=(), reset_every=0,
                               feature_coef=0.0, distill_tail_steps=0)),
        ({"distral_alpha"}, dict(method="distral2col", task="pendulum", distral_alpha=1.0,
                                 partitioner="kmeans", grid_shape=(), reset_every=0)),
        ({"grid_shape"}, dict(partitioner="grid", grid_shape=(P,) * 5)),
        ({"grid_shape"}, dict(partitioner="kmeans", grid_shape=(1,) * SPACES[c.task].dim)),
        ({"partitioner"}, dict(task="pointgoal", partitioner="tasks", grid_shape=())),
        ({"partitions", "partitioner"}, dict(task="fourrooms", partitioner="tasks",
                                             method="central", partitions=3, num_envs=12,
                                             grid_shape=(), kmeans_samples=10, reset_every=0,
                                             total_steps=10**9)),
        ({"partitions"}, dict(task="fourrooms", partitioner="kmeans", method="central",
                              partitions=5, num_envs=10, grid_shape=(), kmeans_samples=10,
                              reset_every=0, total_steps=10**9)),
        ({"num_envs"}, dict(num_envs=P * c.num_envs + 1)) if P > 1 else None,
        # a memory: minibatches of whole sequences must divide each device's envs of a
        # cell; what it does not support is refused, naming the field
        ({"num_minibatches"}, dict(teacher_memory="gru", noise_every=0, reset_every=0,
                                   method="independent",
                                   num_minibatches=c.envs_per_partition + 1)),
        ({"central_memory"}, dict(central_memory="gru", method="ppo", partitioner="kmeans",
                                  grid_shape=(), reset_every=0, feature_coef=0.0,
                                  distill_tail_steps=0, noise_every=0)),
        ({"central_memory"}, dict(central_memory="gru", method="distral2col",
                                  reset_every=0, noise_every=0, distill_tail_steps=0)),
        ({"teacher_memory"}, dict(teacher_memory="gru", method="dnc", noise_every=0,
                                  reset_every=0)),
        ({"noise_every"}, dict(teacher_memory="gru", noise_every=c.envs_per_partition,
                               method="independent", reset_every=0)),
        ({"reset_every"}, dict(teacher_memory="gru", central_memory="none", reset_every=2,
                               method="independent", noise_every=0,
                               teacher_sees_context=c.central_sees_context)),
    ]
    return [b for b in out if b is not None]


@st.composite
def invalid_configs(draw) -> tuple[Config, frozenset, str]:
    """(config, the fields its error may name, how it was broken)."""
    c = draw(valid_configs())
    if draw(st.integers(0, 2)):  # two in three: one field's value, else a combination
        field = draw(st.sampled_from(sorted(BAD_VALUES)))
        return c.replace(**{field: draw(BAD_VALUES[field])}), {field}, f"value of {field}"
    fields, changes = draw(st.sampled_from(_breakers(c)))
    return c.replace(**changes), fields, "combination " + ",".join(sorted(changes))


def test_every_rule_field_has_a_bad_value_strategy():
    ruled = {f for names, _, _ in FIELD_RULES for f in names} | {"sweep"}  # (its own check)
    assert ruled == set(BAD_VALUES)
    from dataclasses import fields
    assert {f.name for f in fields(Config)} == ruled  # every field has a rule


def test_a_fields_role_is_its_declaration_and_the_lists_that_read_it_are_derived():
    @struct.dataclass
    class Wider(Config):
        files: str = static("", GROUPS[6], "a host-only field", host_only=True)
        horizon: int = static(1, GROUPS[1], "in the program; a resume may change it",
                              may_change_on_resume=True)
        width: int = static(1, GROUPS[2], "in the program, fixed for a resume")
        coef: float = leaf(0.1, GROUPS[3], "a coefficient")

    def added(role):
        return set(fields_with(role, Wider)) - set(fields_with(role))

    assert added("host_only") == {"files"}
    assert added("may_change_on_resume") == {"files", "horizon"}  # host-only: computes the same
    assert added("pytree_node") == {"coef"}
    # the program cache's and resume's lists are Config's declarations
    assert HOST_ONLY == fields_with("host_only") and len(HOST_ONLY) == 9
    assert RESUME_MAY_CHANGE == fields_with("may_change_on_resume")
    assert set(RESUME_MAY_CHANGE) - set(HOST_ONLY) == {"total_steps", "log_every",
                                                        "eval_contexts", "num_devices"}
    assert not set(RESUME_MAY_CHANGE) & set(leaf_fields())  # a coefficient is the run's data


@SETTINGS
@given(valid_configs())
def test_valid_configs_validate_and_build_without_compiling(config):
    before = COMPILES.count
    _validate_counting_compiles(config)
    assert COMPILES.count == before, "validate compiled something"
    model = build_model(config)
    assert model.config is config
    CASES["valid"] += 1
    event(f"valid: {config.method}/{config.partitioner}")


@SETTINGS
@given(invalid_configs())
def test_invalid_configs_are_rejected_naming_the_field_before_compiling(case):
    config, fields, how = case
    before = COMPILES.count
    with pytest.raises(ConfigError) as err:
        _validate_counting_compiles(config)
    msg = str(err.value)
    named = msg.split("`")[1] if msg.startswith("config field `") else None
    assert named in fields, (how, msg)
    assert " is invalid: " in msg
    assert COMPILES.count == before, "validate compiled something before rejecting"
    CASES["invalid"] += 1
    CASES[f"invalid {how.split()[0]}"] += 1
    event(how)


@settings(max_examples=3, deadline=None, derandomize=True, database=None)
@given(valid_configs())
def test_a_few_valid_configs_build_their_train_state(config):
    config = validate(config.replace(seeds=1, kmeans_samples=min(config.kmeans_samples, 500)),
                      num_devices=1)
    state = init_run_state(build_model(config))
    assert int(state.iteration) == 0
    CASES["valid, state built"] += 1


def test_report_case_counts():
    """How many cases ran (run after the property tests, in this module's order)."""
    print(f"\nconfig property cases: {dict(CASES)}", file=sys.stderr)
    for kind in ("valid", "invalid"):  # when that test ran in this process (xdist splits)
        assert CASES[kind] in (0, SETTINGS.max_examples), CASES


# --- a bad task registered by a user; the library path rejects before building -----------


def test_a_broken_user_task_is_a_config_error_naming_it():
    from distillax.contexts import ContextSpace

    def broken():
        return ContextSpace(("mass",), (2.0,), (1.0,))  # low > high: raises ValueError

    register("broken_task", broken)
    with pytest.raises(ConfigError, match=r"config field `task` = 'broken_task' is invalid: "
                                          r"a task that builds; its constructor raised "
                                          r"ValueError: context dim `mass`: bounds \[2.0, 1.0\]"):
        check(Config(task="broken_task"))
    register("not_a_task", lambda: 42)
    with pytest.raises(ConfigError, match="`task` = 'not_a_task' is invalid: a constructor "
                                          "returning a ContextualEnv"):
        check(Config(task="not_a_task"))


def test_train_rejects_a_bad_config_before_building_anything(monkeypatch):
    import importlib

    train_module = importlib.import_module("distillax.run")

    def never(*a, **k):
        raise AssertionError("built a model for an invalid config")

    monkeypatch.setattr(train_module, "build_model", never)
    for bad, field in [(dict(num_devices="2"), "num_devices"), (dict(seeds=0), "seeds"),
                       (dict(learning_rate=math.nan), "learning_rate")]:
        with pytest.raises(ConfigError, match=f"`{field}`"):
            train_module.train(Config(**bad), log=lambda _: None)
    with pytest.raises(ConfigError, match=r"`num_devices` = 64 is invalid: at most the \d+ "
                                          r"visible devices"):
        validate(Config(num_devices=64))


def test_empty_grid_cells_assigns_a_tie_as_assign_does():
    """A value on the border between two grid cells belongs to the lower one (`assign`'s
    argmin): values {0.5, 0.9} on [0, 1] in 2 cells fill both (0.5 -> cell 0, 0.9 -> 1)."""
    from distillax.contexts import ContextSpace, assign, make_partition

    space = ContextSpace(names=("x",), low=(0.0,), high=(1.0,), values=((0.5, 0.9),))
    assert _empty_grid_cells(space, (2,)) == 0
    partition = make_partition(jax.random.PRNGKey(0), space, "grid", 2, 100, (2,))
    assert np.asarray(assign(partition, space, jnp.array([[0.5], [0.9]]))).tolist() == [0, 1]
    assert _empty_grid_cells(space, (4,)) == 2  # cells 1 (0.5) and 3 (0.9) hold values
