"""The run configuration: one frozen dataclass, validated once, before any compilation.

Fields that set array shapes or choose code paths are static (`pytree_node=False`); numeric
coefficients are pytree leaves, and the training program reads them from the train state
(`TrainState.hparams`), so the members of a sweep over them run in one vmapped program
without recompiling (the rejax pattern). `validate` raises `ConfigError` naming the field,
the value and what would be valid; the CLI turns that into a one-line message and a
non-zero exit. Each field's description lives in its metadata, read by `--help`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import numbers
from collections.abc import Callable
from typing import Any, NoReturn

from flax import struct

from distillax import methods

DIVERGENCES = ("auto", "kl", "nll", "mse")
SCHEDULES = ("constant", "linear")
WANDB_MODES = ("online", "offline", "disabled")
PARTITIONERS = ("kmeans", "grid", "tasks")
ACTIVATIONS = ("tanh", "relu")
# A role's memory: none (feed-forward) or a GRU after the feed-forward torso. No LSTM: on the
# tasks here a GRU infers a context as well with 3/4 of the parameters and one state array
# instead of two; flax's cells make adding one a few lines when a task shows it earns its place.
MEMORIES = ("none", "gru")
# The central policy's step size over the teachers' (`central_learning_rate` None). Measured
# with experiments/central_fit.py (method `central`, each task's preset, 300k env steps, 3
# seeds, annealed; experiments/results/central_fit.md): at the old 1e-3 (0.4x) the central
# policy ended 3.99 [1.22, 6.76] behind its teachers on pointgoal and 124 [63, 185] on
# pendulum; at 2x the paired gap's interval includes 0 on all five table tasks (pointgoal
# -0.09 [-0.79, 0.61], -0.30 [-1.25, 0.64] with the angle as (cos, sin); pendulum -36
# [-112, 40], cartpole -4.5 [-10.8, 1.8], fourrooms 0, double-pendulum-physics -4.7 [-220,
# 210]); 4x cost cartpole's teachers (coupled to it) with a constant schedule. One central
# epoch instead of all, at 2x, 4x or 8x, left pendulum behind (-29 to -152): all epochs stay.
# At the results' budgets, 5 seeds: experiments/results/central-fit/README.md.
CENTRAL_LR_RATIO = 2.0
# Noise injection's multiplier of the teachers' std or temperature (`noise_scale` None). The
# central-fit audit (issue 24) closed pointgoal's teacher-central gap with teachers acting at
# 2x their std; at the new central step size the gap is closed without it, so noise is off by
# default and this is the scale a user who switches it on starts from.
NOISE_SCALE = 2.0


class ConfigError(ValueError):
    """An invalid configuration; the message names the field, the value and what is valid."""


# Groups of fields, in the order `--help` shows them.
GROUPS = ("task and method", "budget and batches", "networks", "optimisation",
          "distillation and coupling", "sweeps", "reporting and checkpoints")


# A field's `help` is --help's text, or a function returning it where the text cites the
# methods' specs, so that it is read when --help is built (`help_text`).
def static(default: Any, group: str, help: str | Callable[[], str], *, host_only: bool = False,
           may_change_on_resume: bool = False) -> Any:
    """A field that is not traced: it sets shapes or chooses code paths (part of the compiled
    program), or only the host reads it. Its roles are these keyword flags, the one place they
    are declared; they are stored in its metadata, and `fields_with` lists the fields of each:

    - `host_only`: only the host reads it (where files go, how often to evaluate or save,
      where to log), so runs that differ in it compile the same programs
      (`programs.HOST_ONLY`) and compute the same numbers, which is why a resumed run may
      change it too;
    - `may_change_on_resume`: it enters the program, yet a resumed run may change it (how
      long to run, how often to report, the device layout): `checkpoint.RESUME_MAY_CHANGE`.
    """
    return struct.field(pytree_node=False, default=default, metadata={
        "group": group, "help": help, "host_only": host_only,
        "may_change_on_resume": host_only or may_change_on_resume})


def leaf(default: Any, group: str, help: str | Callable[[], str]) -> Any:
    """A numeric coefficient: a pytree leaf, traced in the compiled program, so members of a
    sweep over it run in one program (vmapped) without recompiling. Its role is flax's
    `pytree_node` flag in its metadata; a resumed run may not change it."""
    return struct.field(pytree_node=True, default=default,
                        metadata={"group": group, "help": help})


def _by_method(attr: str) -> str:
    """Each method's `MethodSpec.<attr>` where it is not the spec's default, then the default:
    e.g. "nll for distral, distral2col; kl otherwise"."""
    default = methods.MethodSpec.__dataclass_fields__[attr].default
    names: dict[Any, list[str]] = {}
    for spec in methods.METHODS.values():
        if getattr(spec, attr) != default:
            names.setdefault(getattr(spec, attr), []).append(spec.name)
    parts = [f"{value} for {', '.join(n)}" for value, n in names.items()]
    return "; ".join(parts + [f"{default} otherwise"])


@struct.dataclass
class Config:
    """One run (or one vmapped sweep of runs). Every field's description (what `--help`
    prints, grouped by `GROUPS`) and role (numeric leaf, host-only, may change on resume) are
    its `metadata`, declared by `static` or `leaf`."""

    # --- task and method -------------------------------------------------------------------
    task: str = static("cartpole", GROUPS[0], "the contextual task: a name in "
                       "distillax.envs.names() (add one with distillax.envs.register)")
    method: str = static("central", GROUPS[0], "how teachers and the central policy are "
                         "coupled: a name in distillax.methods.METHODS (README's table)")
    partitioner: str = static("kmeans", GROUPS[0], "how the context space is cut into cells: "
                              "k-means on samples of rho, a grid, or one cell per task")
    partitions: int = static(4, GROUPS[0], "P, the number of teachers (always 1 for a "
                             "single-teacher method such as ppo)")
    grid_shape: tuple[int, ...] = static((), GROUPS[0], "cells per context dimension for "
                                         "partitioner grid; their product is P")
    kmeans_samples: int = static(10_000, GROUPS[0], "samples of rho for k-means and the cell "
                                 "weights rho_i")
    context_candidates: int = static(32, GROUPS[0], "rejection-sampling candidates per reset "
                                     "to draw a context inside a cell (bounded; a stored "
                                     "member of the cell if none lands)")
    teacher_sees_context: bool = static(False, GROUPS[0], "feed the context to the teachers "
                                        "(DnC: they do not see it)")
    central_sees_context: bool = static(True, GROUPS[0], "feed the context to the central "
                                        "policy")
    normalize_obs: bool = static(False, GROUPS[0], "running mean/std of observations, per "
                                 "role (on for the brax tasks' presets)")
    seed: int = static(0, GROUPS[0], "the run's PRNG seed")
    seeds: int = static(1, GROUPS[0], "S independent runs in one program (vmapped): run s "
                        "uses PRNGKey(seed + s), the run --seed seed+s would train alone")

    # --- budget and batches ----------------------------------------------------------------
    num_envs: int = static(64, GROUPS[1], "total envs, split evenly over partitions and "
                           "devices")
    num_steps: int = static(128, GROUPS[1], "T, the rollout length per iteration")
    # 1M: cartpole's `central` is at 487 [458, 516] greedy there over 5 seeds (seed 0: 500),
    # and every method of the results' first edition was at 500 from ~1.5M on
    # (experiments/results/cartpole.md); 3M took 43.5 s of a user's time for no more return
    total_steps: int = static(1_000_000, GROUPS[1], "env-step budget over all partitions "
                              "(per run)", may_change_on_resume=True)
    update_epochs: int = static(4, GROUPS[1], "E, epochs over each rollout")
    num_minibatches: int = static(4, GROUPS[1], "M, minibatches per epoch (they split the time "
                                  "axis, or with a memory the env axis; each holds every "
                                  "partition's slice)")
    num_devices: int = static(0, GROUPS[1], "devices on the data-parallel mesh axis (0 = all "
                              "visible)", may_change_on_resume=True)

    # --- networks --------------------------------------------------------------------------
    hidden_sizes: tuple[int, ...] = static((64, 64), GROUPS[2], "hidden layer widths of every "
                                           "actor and critic")
    activation: str = static("tanh", GROUPS[2], "hidden activation")
    teacher_memory: str = static("none", GROUPS[2], "the teachers' memory: none "
                                 "(feed-forward) or gru (a GRU after the torso, one for the "
                                 "actor and one for the critic; its state is reset at every "
                                 "episode end)")
    central_memory: str = static("none", GROUPS[2], "the central policy's memory: none or gru "
                                 "(its state runs along the teachers' trajectories, reset at "
                                 "their episode ends, and reads the previous action; it "
                                 "never acts)")
    memory_size: int = static(128, GROUPS[2], "units of each GRU (with a memory)")

    # --- optimisation ------------------------------------------------------------------------
    learning_rate: float = leaf(2.5e-3, GROUPS[3], "the teachers' Adam step size")
    central_learning_rate: float | None = leaf(
        None, GROUPS[3], "the central policy's Adam step size (None: CENTRAL_LR_RATIO = 2 x "
        "learning_rate; the old fixed 1e-3 left it behind its teachers)")
    anneal_lr: bool = static(True, GROUPS[3], "decay the teachers' step size linearly to 0 "
                             "at their optimizer's last step")
    anneal_central_lr: bool = static(True, GROUPS[3], "decay the central policy's step size "
                                     "linearly to 0 at its optimizer's last step")
    max_grad_norm: float = leaf(0.5, GROUPS[3], "clip of each teacher's own (unweighted) loss "
                                "gradient, and of the central policy's")
    reward_scale: float = leaf(1.0, GROUPS[3], "rewards (Distral's regularised ones included) "
                               "are multiplied by this before GAE; returns are reported "
                               "unscaled. Keeps large-reward tasks' value targets within reach "
                               "of the clipped value loss")
    gamma: float = leaf(0.99, GROUPS[3], "discount")
    gae_lambda: float = leaf(0.95, GROUPS[3], "GAE's lambda")
    clip_eps: float = leaf(0.2, GROUPS[3], "PPO's ratio and value clipping")
    vf_coef: float = leaf(0.5, GROUPS[3], "c_v, weight of the value loss")
    ent_coef: float = leaf(0.01, GROUPS[3], "c_ent, weight of the entropy bonus")

    # --- distillation and coupling -------------------------------------------------------------
    coupling_coef: float | None = leaf(
        None, GROUPS[4], lambda: "alpha, weight of each teacher's coupling L_couple_i; unset: "
        f"the method's default ({_by_method('coupling_coef')})")
    central_clip_eps: float = leaf(0.2, GROUPS[4], "eps_c: central-clip keeps pi_i / pi_c in "
                                   "[1 - eps_c, 1 + eps_c]")
    distill_coef: float = leaf(1.0, GROUPS[4], "lambda, weight of L_distill (at the start of "
                               "its schedule). Not a strength: the central loss has its own "
                               "Adam, which divides out its scale; lambda weighs distillation "
                               "against feature distillation, and only a very small one (<~ "
                               "0.01, near Adam's eps) slows it. The distillation step size is "
                               "central_learning_rate")
    distill_coef_end: float = leaf(1.0, GROUPS[4], "lambda at the last iteration, for "
                                   "distill_schedule linear")
    distral_alpha: float = leaf(0.5, GROUPS[4], "Distral's alpha = c_KL / (c_KL + c_ent) in "
                                "[0, 1]: weight of log pi_c in the reward and of the shared "
                                "column in distral2col's teachers")
    distral_beta: float = leaf(5.0, GROUPS[4], "Distral's beta = 1 / (c_KL + c_ent): the "
                               "teachers' inverse temperature")
    divergence: str = static(
        "auto", GROUPS[4], lambda: "D in L_distill: kl (closed form), nll (of the teacher's "
        f"action), mse (logits / means); auto: the method's ({_by_method('divergence')})")
    distill_schedule: str = static("constant", GROUPS[4], "lambda over iterations")
    feature_coef: float = static(0.0, GROUPS[4], "feature distillation (Actor-Mimic): beta of "
                                 "the regression of each teacher's last hidden layer from the "
                                 "central policy's, through a learned linear map per teacher; "
                                 "0 = off (static: it decides whether the maps exist; "
                                 "Actor-Mimic used 0.01)")
    distill_tail_steps: int = static(0, GROUPS[4], "env steps after total_steps in which the "
                                     "teachers, frozen, still act and only the central policy "
                                     "learns from them (counted as env steps; 0: none)")
    noise_every: int = static(0, GROUPS[4], "noise injection: one env in every N of each "
                              "cell acts with its teacher's noise scaled by noise_scale; only "
                              "the central policy learns from those steps (labels: the "
                              "teacher's own distributions), never the teachers' PPO, value or "
                              "coupling terms (0 = off)")
    noise_scale: float | None = leaf(None, GROUPS[4], "noise injection's multiplier of the "
                                     "teacher's std (Gaussian) or temperature (categorical) "
                                     "(None: NOISE_SCALE = 2)")
    distill_epochs: int = static(0, GROUPS[4], "epochs per iteration that train the central "
                                 "policy, the first ones (0 = all); the others skip its "
                                 "passes, so fewer epochs cost less")
    cross_steps: int = static(0, GROUPS[4], "time steps of each minibatch on which DnC's "
                              "pairwise terms are estimated, an unbiased subsample (0 = auto: "
                              "ceil(minibatch time steps / P), the steps T/M, or T with a "
                              "memory; one teacher pass instead of P)")
    reset_every: int = static(0, GROUPS[4], "DnC's reset: every R iterations each teacher "
                              "becomes the central policy (0 = off; needs teachers and central "
                              "to see the same input)")

    # --- sweeps ----------------------------------------------------------------------------------
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = static(
        (), GROUPS[5], "a grid over numeric coefficients, trained as K members x seeds runs in "
        "one vmapped program: --sweep coupling_coef=0.001,0.01 --sweep distill_coef=0.5,1")

    # --- reporting and checkpoints -----------------------------------------------------------
    log_every: int = static(0, GROUPS[6], "iterations per host call (scanned on device), one "
                            "report each (0 = auto: about 40 per run)",
                            may_change_on_resume=True)
    eval_contexts: int = static(64, GROUPS[6], "held-out contexts of the central policy's "
                                "evaluation", may_change_on_resume=True)
    eval_every: int = static(0, GROUPS[6], "iterations between held-out evaluations (0 = auto: "
                             "their env steps within a quarter of training's)", host_only=True)
    checkpoint_dir: str = static("", GROUPS[6], "where checkpoints, config.json, metrics.jsonl "
                                 "and results.json go ('' = none)", host_only=True)
    checkpoint_every: int = static(0, GROUPS[6], "iterations between checkpoints, and one at "
                                   "the end (0 = auto: a tenth of the run, or 10 minutes)",
                                   host_only=True)
    max_to_keep: int = static(3, GROUPS[6], "checkpoints kept on disk", host_only=True)
    tensorboard: bool = static(False, GROUPS[6], "also write TensorBoard events to "
                               "checkpoint_dir/tensorboard", host_only=True)
    wandb: bool = static(False, GROUPS[6], "also log the records to Weights & Biases (the "
                         "wandb extra); a resumed run continues the same wandb run",
                         host_only=True)
    wandb_project: str = static("distillax", GROUPS[6], "the wandb project", host_only=True)
    wandb_name: str = static("", GROUPS[6], "the wandb run name ('' = the checkpoint_dir's "
                             "name, or wandb's own)", host_only=True)
    wandb_mode: str = static("online", GROUPS[6], "wandb's mode: offline writes the run under "
                             "checkpoint_dir/wandb for a later `wandb sync`", host_only=True)

    # ---------------------------------------------------------------------------------------
    @property
    def spec(self) -> methods.MethodSpec:
        """What the method is (`methods.py`); the config is validated first."""
        return methods.get(self.method)

    def __post_init__(self):
        # One name for P: a single-teacher method (ppo) has one partition whatever was asked,
        # so `partitions` is always the number of teachers (an unknown method is left for
        # `validate` to name).
        spec = methods.METHODS.get(self.method)
        if spec is not None and spec.single_teacher:
            object.__setattr__(self, "partitions", 1)

    @property
    def has_memory(self) -> bool:
        """Whether a role is recurrent (then minibatches split the env axis, not time)."""
        return self.teacher_memory != "none" or self.central_memory != "none"

    @property
    def resolved_divergence(self) -> str:
        return self.spec.divergence if self.divergence == "auto" else self.divergence

    @property
    def central_lr(self) -> Any:
        """The central policy's step size: `central_learning_rate`, or (None) CENTRAL_LR_RATIO
        times the teachers' (traced with it in a sweep)."""
        if self.central_learning_rate is None:
            return CENTRAL_LR_RATIO * self.learning_rate
        return self.central_learning_rate

    @property
    def resolved_noise_scale(self) -> Any:
        """Noise injection's scale: `noise_scale`, or (None) NOISE_SCALE."""
        return NOISE_SCALE if self.noise_scale is None else self.noise_scale

    @property
    def alpha(self) -> Any:
        """The coupling weight: `coupling_coef`, or the method's default when it is None."""
        return self.spec.coupling_coef if self.coupling_coef is None else self.coupling_coef

    @property
    def active_distill_epochs(self) -> int:
        """Epochs per iteration with distillation on (the first ones; `distill_epochs` 0: all)."""
        return self.distill_epochs or self.update_epochs

    @property
    def central_epochs(self) -> int:
        """Epochs per iteration in which the central policy takes steps: the distillation
        epochs, or all of them when the teachers share its network (their PPO loss trains it)."""
        return self.update_epochs if self.spec.shares_central else self.active_distill_epochs

    @property
    def minibatch_steps(self) -> int:
        """Time steps of each minibatch: T/M, or with a memory (minibatches split the envs)
        the whole rollout's T."""
        return self.num_steps if self.has_memory else self.num_steps // self.num_minibatches

    @property
    def resolved_cross_steps(self) -> int:
        """`cross_steps`, or its auto value ceil(minibatch_steps / P)."""
        return self.cross_steps or -(-self.minibatch_steps // self.partitions)

    @property
    def envs_per_partition(self) -> int:
        return self.num_envs // self.partitions

    @property
    def steps_per_iteration(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def teacher_iterations(self) -> int:
        """Iterations in which the teachers learn: `total_steps`' worth."""
        return max(1, self.total_steps // self.steps_per_iteration)

    @property
    def num_iterations(self) -> int:
        """The teachers' iterations, then the distillation tail's."""
        return self.teacher_iterations + self.distill_tail_steps // self.steps_per_iteration

    @property
    def report_every(self) -> int:
        """Iterations per host call: `log_every`, or (0) about 40 calls per run."""
        return self.log_every or max(1, -(-self.num_iterations // 40))

    @property
    def save_every(self) -> int:
        """Iterations between checkpoints: `checkpoint_every`, or (0) a tenth of the run."""
        return self.checkpoint_every or max(1, -(-self.num_iterations // 10))

    @property
    def num_updates(self) -> int:
        """The teachers' optimizer steps (none in the distillation tail)."""
        return self.teacher_iterations * self.update_epochs * self.num_minibatches

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """A config from `to_dict`'s form, as JSON or TOML read it (lists for tuples)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: _tuples(v) for k, v in d.items()})

    # --- sweeps ----------------------------------------------------------------------------
    @property
    def members(self) -> list[Config]:
        """The K configs of the sweep's grid (the last field varying fastest), each with
        `sweep = ()`; one, this config, without a sweep."""
        if not self.sweep:
            return [self]
        names = [name for name, _ in self.sweep]
        grid = itertools.product(*[values for _, values in self.sweep])
        return [self.replace(sweep=(), **dict(zip(names, point))) for point in grid]

    @property
    def num_runs(self) -> int:
        """R = K members x S seeds: the runs of one program (run r: member r // S, seed
        seed + r % S)."""
        return len(self.members) * self.seeds


def _tuples(x: Any) -> Any:
    """Lists (JSON's and TOML's arrays) as tuples, nested."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def _fail(field: str, value: Any, valid: str) -> NoReturn:
    raise ConfigError(f"config field `{field}` = {value!r} is invalid: {valid}")


# --- the rules: one predicate and one "what is valid" text per group of fields ------------


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int_tuple(v: Any) -> bool:
    return isinstance(v, tuple) and all(_is_int(x) and x >= 1 for x in v)


# (fields, predicate, what is valid). Checked in order, each on its own field, before any
# rule that combines fields, so a combination's message never reads a value of a wrong type.
FIELD_RULES: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (("task",), lambda v: isinstance(v, str) and v != "",
     "a task name (one of distillax.envs.names(); add one with distillax.envs.register)"),
    (("method",), lambda v: isinstance(v, str) and v in methods.METHODS,
     "one of the methods in distillax.methods.METHODS (add one with methods.register)"),
    (("partitioner",), lambda v: v in PARTITIONERS, f"one of {list(PARTITIONERS)}"),
    (("divergence",), lambda v: v in DIVERGENCES, f"one of {list(DIVERGENCES)}"),
    (("distill_schedule",), lambda v: v in SCHEDULES, f"one of {list(SCHEDULES)}"),
    (("activation",), lambda v: v in ACTIVATIONS, f"one of {list(ACTIVATIONS)}"),
    (("teacher_memory", "central_memory"), lambda v: v in MEMORIES,
     f"one of {list(MEMORIES)}"),
    (("partitions", "num_envs", "num_steps", "total_steps", "update_epochs", "num_minibatches",
      "seeds", "kmeans_samples", "context_candidates", "eval_contexts", "max_to_keep",
      "memory_size"),
     lambda v: _is_int(v) and v >= 1, "a positive integer"),
    (("seed",), lambda v: _is_int(v) and 0 <= v < 2**31, "an integer in [0, 2**31)"),
    (("num_devices",), lambda v: _is_int(v) and v >= 0,
     "an integer >= 0 (0 = every visible device)"),
    (("distill_epochs", "reset_every", "eval_every", "cross_steps", "log_every",
      "checkpoint_every", "distill_tail_steps", "noise_every"),
     lambda v: _is_int(v) and v >= 0,
     "an integer >= 0 (0 switches it off / means every epoch / auto)"),
    (("teacher_sees_context", "central_sees_context", "normalize_obs", "anneal_lr",
      "anneal_central_lr", "tensorboard", "wandb"), lambda v: isinstance(v, bool), "True or False"),
    (("wandb_project", "wandb_name"), lambda v: isinstance(v, str), "a string"),
    (("wandb_mode",), lambda v: v in WANDB_MODES, f"one of {list(WANDB_MODES)}"),
    (("checkpoint_dir",), lambda v: isinstance(v, str), "a directory path (a string; '' = none)"),
    (("hidden_sizes",), lambda v: _is_int_tuple(v) and len(v) > 0,
     "a non-empty tuple of positive integers, e.g. (64, 64)"),
    (("grid_shape",), _is_int_tuple, "a tuple of positive integers (cells per context dim)"),
    (("learning_rate", "max_grad_norm", "clip_eps", "distral_beta", "reward_scale",
      "central_clip_eps"),
     lambda v: _is_real(v) and v > 0, "a finite number > 0"),
    (("central_learning_rate",), lambda v: v is None or (_is_real(v) and v > 0),
     "a finite number > 0, or None (CENTRAL_LR_RATIO x learning_rate)"),
    (("noise_scale",), lambda v: v is None or (_is_real(v) and v > 0),
     "a finite number > 0, or None (NOISE_SCALE)"),
    (("vf_coef", "ent_coef", "distill_coef", "distill_coef_end", "feature_coef"),
     lambda v: _is_real(v) and v >= 0,
     "a finite number >= 0 (a coupling penalty is added to a minimised loss)"),
    (("coupling_coef",), lambda v: v is None or (_is_real(v) and v >= 0),
     "a finite number >= 0, or None for the method's default"),
    (("gamma", "gae_lambda", "distral_alpha"), lambda v: _is_real(v) and 0 <= v <= 1,
     "a number in [0, 1]"),
)


def fields_with(role: str, cls: type = Config) -> tuple[str, ...]:
    """The fields of `cls` whose metadata declares `role`: "pytree_node" (a numeric leaf,
    `leaf`), "host_only" or "may_change_on_resume" (`static`), in declaration order."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(role))


def leaf_fields() -> tuple[str, ...]:
    """The numeric coefficients: the fields a sweep may vary."""
    return fields_with("pytree_node")


def help_text(field: dataclasses.Field) -> str:
    """A field's description for --help; one that cites the methods' defaults reads them from
    `methods.METHODS` now, so a method registered after import is listed too."""
    text = field.metadata["help"]
    return text() if callable(text) else text


def _check_sweep(sweep: Any) -> None:
    valid = (f"a tuple of (field, values) pairs over distinct numeric fields {list(leaf_fields())}"
             ", each with one or more values, e.g. (('coupling_coef', (0.01, 0.1)),)")
    if not isinstance(sweep, tuple):
        _fail("sweep", sweep, valid)
    names = []
    for item in sweep:
        if not (isinstance(item, tuple) and len(item) == 2 and item[0] in leaf_fields()
                and isinstance(item[1], tuple) and len(item[1]) >= 1):
            _fail("sweep", sweep, valid)
        names.append(item[0])
    if len(set(names)) != len(names):
        _fail("sweep", sweep, valid)


def _check_fields(config: Config) -> None:
    for names, ok, valid in FIELD_RULES:
        for name in names:
            value = getattr(config, name)
            if not ok(value):
                _fail(name, value, valid)
    _check_sweep(config.sweep)
    rules = {name: (ok, valid) for names, ok, valid in FIELD_RULES for name in names}
    for name, values in config.sweep:  # each value by its field's own rule
        ok, valid = rules[name]
        for value in values:
            if value is None or not ok(value):
                _fail("sweep", config.sweep, f"values valid for `{name}` ({name} = {value!r} "
                                             f"is not {valid})")


def _distinct_contexts(space: Any) -> float:
    """How many different contexts rho can draw (inf when a dimension is continuous)."""
    if space.tasks is not None:
        return len(set(map(tuple, space.tasks)))
    if any(v is None for v in space.values):
        return math.inf
    return math.prod(len(set(v)) for v in space.values)


def _empty_grid_cells(space: Any, shape: tuple[int, ...]) -> int:
    """How many cells of a grid over `space` rho never draws from: cells a task set or a
    discrete dimension's values miss (a continuous dimension fills all of its cells)."""

    def cell(k: int, v: float) -> int:
        # The grid cell of value v along dim k, as `contexts.assign` picks it: the nearest
        # centre (i + 0.5) / n, a tie going to the lower cell (argmin's first index).
        z = (v - space.low[k]) / (space.high[k] - space.low[k])
        dist = [abs(z - (i + 0.5) / shape[k]) for i in range(shape[k])]
        return dist.index(min(dist))

    if space.tasks is not None:
        hit = {tuple(cell(k, v) for k, v in enumerate(t)) for t in space.tasks}
        return math.prod(shape) - len(hit)
    counts = [n if vals is None else len({cell(k, v) for v in vals})
              for k, (n, vals) in enumerate(zip(shape, space.values))]
    return math.prod(shape) - math.prod(counts)


def _check_method_rules(c: Config) -> None:
    """The options a method must allow: distillation epochs, DnC's reset, the distillation
    tail, feature distillation."""
    spec = c.spec
    if c.distill_epochs > c.update_epochs:
        _fail("distill_epochs", c.distill_epochs, f"at most update_epochs = {c.update_epochs}")
    if c.reset_every:
        if not spec.reset_allowed:
            _fail("reset_every", c.reset_every,
                  f"0 for method `{c.method}` (it has no separate central network to copy)")
        if c.teacher_sees_context != c.central_sees_context:
            _fail("reset_every", c.reset_every,
                  "0 unless teachers and the central policy have the same input "
                  f"(teacher_sees_context = {c.teacher_sees_context}, central_sees_context = "
                  f"{c.central_sees_context})")
    if c.distill_tail_steps and not spec.own_central:
        _fail("distill_tail_steps", c.distill_tail_steps,
              f"0 for method `{c.method}` (its teachers cannot be frozen apart from a central "
              "policy: it has none, or they share its network)")
    if c.distill_tail_steps % c.steps_per_iteration:
        _fail("distill_tail_steps", c.distill_tail_steps,
              f"a multiple of num_envs x num_steps = {c.steps_per_iteration} (whole iterations)")
    if c.feature_coef > 0 and not spec.has_central:
        _fail("feature_coef", c.feature_coef, f"0 for method `{c.method}` (there is no central "
                                              "policy to distil features into)")


def _check_sizes(c: Config, num_devices: int) -> None:
    """How cells, envs, devices, steps and minibatches divide one another."""
    P = c.partitions
    if c.partitions > c.kmeans_samples:
        _fail("partitions", c.partitions, f"at most kmeans_samples = {c.kmeans_samples}")
    if c.num_envs % (P * num_devices):
        _fail("num_envs", c.num_envs,
              f"a multiple of partitions x devices = {P} x {num_devices} = {P * num_devices}")
    if c.noise_every:
        _check_noise(c, c.num_envs // (P * num_devices))
    if c.has_memory:
        _check_memory(c)
    envs_per_device = c.num_envs // (P * num_devices)
    if c.has_memory and envs_per_device % c.num_minibatches:
        _fail("num_minibatches", c.num_minibatches,
              f"a divisor of the envs of a cell on each device, num_envs / (partitions x "
              f"devices) = {envs_per_device} (with a memory, minibatches split the env axis "
              "so that each keeps whole sequences)")
    if not c.has_memory and c.num_steps % c.num_minibatches:
        _fail("num_minibatches", c.num_minibatches,
              f"a divisor of num_steps = {c.num_steps} (minibatches split the time axis)")
    if c.cross_steps > c.minibatch_steps:
        _fail("cross_steps", c.cross_steps, f"at most the time steps of a minibatch, "
              f"{c.minibatch_steps} (num_steps, or with a memory num_steps / num_minibatches; "
              "0 = auto)")
    if c.total_steps < c.steps_per_iteration:
        _fail("total_steps", c.total_steps,
              f"at least num_envs x num_steps = {c.steps_per_iteration} (one iteration)")


def _check_memory(c: Config) -> None:
    """What a recurrent role does not support (refused rather than half-supported)."""
    spec = c.spec
    role = "teacher_memory" if c.teacher_memory != "none" else "central_memory"
    value = getattr(c, role)
    if c.central_memory != "none" and not spec.has_central:
        _fail("central_memory", c.central_memory, f"none for method `{c.method}` (it has no "
              "central policy; its single teacher's memory is teacher_memory)")
    if spec.shares_central and c.central_memory != "none":
        _fail("central_memory", c.central_memory, f"none for method `{c.method}` (a "
              "recurrent shared column would need the central state in every teacher's "
              "rollout; recurrent teachers, teacher_memory, are supported)")
    if spec.coupling.needs_cross and c.teacher_memory != "none":
        _fail("teacher_memory", c.teacher_memory, f"none for method `{c.method}` (its pairwise "
              "terms run every teacher on every partition's states, which for a recurrent "
              "teacher needs its state along every other partition's trajectories; a recurrent "
              "central policy, central_memory, is supported)")
    if c.noise_every:
        _fail("noise_every", c.noise_every, f"0 with {role} = {value!r} (minibatches of whole "
              "sequences do not keep the noisy envs' pattern)")
    if c.reset_every:  # the central actor is copied into actors of another shape
        _fail("reset_every", c.reset_every, f"0 with {role} = {value!r} (a recurrent central "
              "policy's GRU also reads the previous action, a recurrent teacher's does not, "
              "and a feed-forward actor has no GRU)")


def _check_outputs(c: Config) -> None:
    """What the run writes and with what: TensorBoard, wandb; fields only one partitioner
    reads."""
    if c.tensorboard and not c.checkpoint_dir:
        _fail("tensorboard", c.tensorboard,
              "False without a checkpoint_dir (the events are written under it)")
    if c.wandb and importlib.util.find_spec("wandb") is None:
        _fail("wandb", c.wandb, "False, or install the wandb package: pip install "
                                "'distillax[wandb]'")
    if c.partitioner != "grid" and c.grid_shape:
        _fail("grid_shape", c.grid_shape, f"() with partitioner `{c.partitioner}` (only `grid` "
                                          "reads it)")


def _check_noise(c: Config, envs_per_device: int) -> None:
    """Noise injection's combinations: its steps must reach a central policy that only
    distillation trains, with the teacher's distribution as the label, and every device
    must hold the same pattern of noisy envs (so that 1 device = N devices)."""
    if c.noise_every == 1:
        _fail("noise_every", 1, "0 (off) or at least 2 (one env in N; 1 would leave the "
                                "teachers no steps of their own)")
    if not c.spec.own_central:
        _fail("noise_every", c.noise_every, f"0 for method `{c.method}` (only a central "
              "policy with a network of its own learns from the noisy steps: it has none, or "
              "its teachers share it)")
    if c.resolved_divergence == "nll":
        _fail("noise_every", c.noise_every, "0 with divergence nll (its label is the action "
              "taken, which is the noisy one; use kl or mse)")
    if envs_per_device % c.noise_every:
        _fail("noise_every", c.noise_every, f"a divisor of the envs of a cell on each device, "
              f"num_envs / (partitions x devices) = {envs_per_device}")


def validate(config: Config, num_devices: int | None = None) -> Config:
    """Check every field and every combination that does not depend on the task; returns the
    config. The task's own rules (`check_task`) are checked where the task is built
    (`envs.build`, which `model.build_model` calls). Both compile nothing, so a run checks
    everything before any jit.

    `num_devices` is the size of the "data" mesh axis the run will use; None: the config's
    own `num_devices`, or every visible device for 0 (which starts the JAX backend).
    """
    c = config
    _check_fields(c)
    if num_devices is None:
        import jax

        visible = jax.device_count()
        if c.num_devices > visible:
            _fail("num_devices", c.num_devices, f"at most the {visible} visible devices (0 = all)")
        num_devices = c.num_devices or visible

    _check_method_rules(c)
    _check_sizes(c, num_devices)
    _check_outputs(c)
    return config


def check_task(config: Config, task: Any) -> None:
    """The rules that depend on the task (`task`: the built `ContextualEnv`): its context space
    against the partitioner, the grid and P, and its action type against Distral's 2-column
    product. Raises `ConfigError` naming the field; compiles nothing."""
    c, space, spec, P = config, task.space, config.spec, config.partitions
    for member in c.members:
        if spec.shares_central and not task.discrete and member.distral_alpha >= 1:
            _fail("sweep" if c.sweep else "distral_alpha",
                  c.sweep if c.sweep else c.distral_alpha,
                  f"distral_alpha < 1 for method `{c.method}` on task `{c.task}` (continuous "
                  "actions: its task column's Gaussian is scaled by 1 - alpha, see "
                  "DiagGaussian.combine)")
    if P > _distinct_contexts(space):
        _fail("partitions", c.partitions, f"at most the {_distinct_contexts(space)} distinct "
                                          f"contexts of task `{c.task}` (a cell would be empty)")
    if c.partitioner == "grid":
        if len(c.grid_shape) != space.dim:
            _fail("grid_shape", c.grid_shape,
                  f"{space.dim} cell counts, one per context dim {list(space.names)}")
        if math.prod(c.grid_shape) != P:
            _fail("grid_shape", c.grid_shape, f"cell counts whose product is partitions = {P}")
        empty = _empty_grid_cells(space, c.grid_shape)
        if empty:
            _fail("grid_shape", c.grid_shape, f"a grid whose cells all hold contexts of task "
                                              f"`{c.task}` ({empty} of its cells would be empty)")
    if c.partitioner == "tasks":
        if space.tasks is None:
            _fail("partitioner", c.partitioner,
                  f"`kmeans` or `grid`: task `{c.task}` has a continuous context space")
        if spec.single_teacher and len(space.tasks) != 1:
            _fail("partitioner", c.partitioner, f"`kmeans` for method `{c.method}` (its one "
                  f"teacher acts in all {len(space.tasks)} tasks of `{c.task}`)")
        if P != len(space.tasks):
            _fail("partitions", c.partitions,
                  f"the number of tasks of `{c.task}` ({len(space.tasks)}) for partitioner `tasks`")
