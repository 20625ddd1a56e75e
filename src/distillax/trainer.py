"""One training iteration as a pure function, and its sharded, scanned form.

An iteration = rollout of every teacher in its partition, GAE, the fused update, and the
normaliser update: `iteration(model, state) -> (state, metrics)`, run under `shard_map`
and scanned up to `log_every` times per host call, so the host syncs once per report. A run
compiles this program once: how many of the scanned iterations run is a traced argument.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from distillax import losses, normalizer, parallel, programs
from distillax.config import Config, ConfigError, leaf_fields
from distillax.contexts import Partition, make_partition
from distillax.model import Model
from distillax.normalizer import RunningStats
from distillax.rollout import (
    EnvCarry,
    Transition,
    acting_envs,
    episode_starts,
    gae,
    init_envs,
    rollout,
)
from distillax.update import UPDATE_TERMS, Batch, OptState, Params, UpdateMetrics, update
from distillax.xla import RUN_ONCE

# What the numerical guard watches in one iteration (`IterationMetrics.nonfinite`), in the
# order a fault propagates, with what each name means in a message.
NONFINITE_TERMS = ("reward",) + UPDATE_TERMS
TERM_MEANING = {"reward": "the environment's reward", "clip": "the PPO clipped loss",
                "value": "the value loss", "entropy": "the policy entropy",
                "couple": "the coupling term",
                "distill": "the distillation loss (or feature regression)",
                "grad": "the gradients", "params": "the parameters after a step"}


class NumericalError(RuntimeError):
    """A training iteration produced a non-finite value; the message names the iteration and
    the terms (`NONFINITE_TERMS`). The run stops without saving the faulty state."""


@struct.dataclass
class TrainState:
    """Everything a run needs to continue: checkpoint this and resume exactly."""

    params: Params
    opt: OptState
    teacher_stats: RunningStats  # [P, obs]
    central_stats: RunningStats  # [obs]
    env: EnvCarry  # leaves [P, B, ...], split across devices
    partition: Partition
    key: jax.Array  # [2]
    iteration: jax.Array  # int32 scalar
    # the run's numeric coefficients by field name, float32 arrays: what the training program
    # reads them from (`Model.with_hparams`), so each run of a vmapped sweep trains its own
    hparams: dict[str, jax.Array]


def hparams_of(config: Config) -> dict[str, jax.Array]:
    """The numeric coefficients of `config` (its pytree leaves: `config.leaf_fields`, those
    set) as float32 arrays: `TrainState.hparams`."""
    return {name: jnp.asarray(getattr(config, name), jnp.float32) for name in leaf_fields()
            if getattr(config, name) is not None}


@struct.dataclass
class IterationMetrics:
    update: UpdateMetrics
    teacher_return: jax.Array  # [P] mean return of each env's last completed episode
    episodes: jax.Array  # [P] episodes completed so far
    nonfinite: jax.Array  # [len(NONFINITE_TERMS)] bool: reward, then the update's terms


def init_state(model: Model, key: jax.Array) -> TrainState:
    """A fresh run: partitions, params, optimizer states, normalisers and reset envs."""
    c = model.config
    k_part, k_params, k_env, k_train = jax.random.split(key, 4)
    P = c.partitions
    try:
        partition = make_partition(k_part, model.env.space, c.partitioner, P, c.kmeans_samples,
                                   tuple(c.grid_shape))
    except ValueError as e:  # a cell without samples: rare for k-means after `validate`
        raise ConfigError(f"config field `partitions` = {c.partitions} is invalid: fewer, or "
                          f"more kmeans_samples ({e})") from None
    # Called under a trace (jax.eval_shape, a user's jit or vmap) the fresh state is traced
    # into that program: compiler options are only allowed on a top-level jit.
    init = _fresh if isinstance(k_params, jax.core.Tracer) else _init_rest
    return init(model, partition, k_params, k_env, k_train)


def _fresh(model: Model, partition: Partition, k_params: jax.Array, k_env: jax.Array,
               k_train: jax.Array) -> TrainState:
    """Everything of a fresh state but the partition, as one compiled program: built op by op
    it took dozens of small compilations, most of a short run's start-up on CPU.

    Every leaf is strongly typed: a leaf made from a Python number (a normaliser's count, a
    gymnax env's `time = 0`) would be weakly typed, while a restored checkpoint's never is, so
    a resumed run's training program would differ from the fresh run's and compile again
    instead of loading from the persistent cache."""
    c = model.config
    P, obs_dim = c.partitions, model.env.obs_dim
    teacher, central = model.init_params(k_params)
    opt = OptState(teacher=model.teacher_tx.init(teacher), central=model.central_tx.init(central))
    env = init_envs(k_env, model.env, partition, c.envs_per_partition, c.context_candidates,
                    model.initial_memory((P, c.envs_per_partition)))
    state = TrainState(params=Params(teacher=teacher, central=central), opt=opt,
                       teacher_stats=normalizer.init_stats((P, obs_dim)),
                       central_stats=normalizer.init_stats((obs_dim,)), env=env,
                       partition=partition, key=k_train, iteration=jnp.zeros((), jnp.int32),
                       hparams=hparams_of(c))
    return jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype), state)


_init_rest = jax.jit(_fresh, static_argnums=0, compiler_options=RUN_ONCE)


def seed_keys(config: Config) -> list[jax.Array]:
    """The run keys of a config: `PRNGKey(seed + s)` for s < seeds. Run s of a multi-seed
    program is therefore exactly the single run with `seed = seed + s` (same partition, init,
    envs and training stream), which is what makes per-seed results comparable."""
    return [jax.random.PRNGKey(config.seed + s) for s in range(config.seeds)]


def init_run_state(model: Model) -> TrainState:
    """The fresh state of `model.config`'s runs: R = K members x S seeds (`Config.num_runs`).

    One run: a plain `TrainState` (as `init_state`). R > 1: the S seeds' states, built one by
    one on the host (partition building is host-side per key), then for run r = k S + s the
    state of seed s with member k's coefficients, stacked along a new leading run axis: every
    leaf is `[R, ...]`, env leaves `[R, P, B, ...]`. Run r is therefore the single run of
    member k's config with seed `seed + s`.
    """
    c = model.config
    seeds = [init_state(model, k) for k in seed_keys(c)]
    states = [s.replace(hparams=hparams_of(m)) for m in c.members for s in seeds]
    if len(states) == 1:
        return states[0]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def run_axis(model: Model) -> bool:
    """Whether the state carries a leading run axis (several seeds or sweep members)."""
    return model.config.num_runs > 1


def select_run(state: TrainState, r: int) -> TrainState:
    """Run r of a stacked `[R, ...]` state: the state of that run on its own."""
    return jax.tree.map(lambda x: x[r], state)


def _psum_mean(total: jax.Array, count: jax.Array, axis_name: str | None) -> jax.Array:
    if axis_name is not None:
        total, count = jax.lax.psum((total, count), axis_name)
    return total / jnp.maximum(count, 1.0)


def distill_coef_at(config: Config, iteration: jax.Array) -> jax.Array:
    """lambda at an iteration: constant, or linear from distill_coef to distill_coef_end."""
    if config.distill_schedule == "constant":
        return jnp.asarray(config.distill_coef, jnp.float32)
    frac = iteration / max(config.num_iterations - 1, 1)
    return config.distill_coef + (config.distill_coef_end - config.distill_coef) * frac


def reset_teachers(teacher: Any, central: Any) -> Any:
    """Copy the central actor into every teacher's actor (DnC's periodic reset); critics stay,
    and so do the central-only params (the feature maps)."""
    num = jax.tree.leaves(teacher)[0].shape[0]
    shared = {k: central["params"][k] for k in teacher["params"]["actor"]}
    actor = jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + x.shape), shared)
    return {**teacher, "params": {**teacher["params"], "actor": actor}}


def reset_actor_momentum(opt_state: Any) -> Any:
    """Zero the first moment (Adam's `mu`) of the teachers' actor params at a reset.

    The reset teacher is a new policy, so the old one's momentum points the wrong way; the
    second moment (`nu`) is kept: it estimates the scale of the teacher's own loss gradient,
    which a reset does not change, and with Adam's step count kept too the first steps after a
    reset are small ((1 - b1) of a full step) and grow as the new momentum builds. Critics
    keep everything.
    """

    def zero_actor(s: Any) -> Any:
        if not isinstance(s, optax.ScaleByAdamState):
            return s
        params = s.mu["params"]
        actor = jax.tree.map(jnp.zeros_like, params["actor"])
        return s._replace(mu={**s.mu, "params": {**params, "actor": actor}})

    return jax.tree.map(zero_actor, opt_state,
                        is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))


def reset_stats(teacher_stats: RunningStats, central_stats: RunningStats) -> RunningStats:
    """Every teacher's observation statistics `[P, obs]` := the central policy's `[obs]`:
    with its actor and its normaliser, a reset teacher acts exactly as the central policy."""
    num = teacher_stats.mean.shape[0]
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + x.shape), central_stats)


def training_rewards(model: Model, central_log_prob: jax.Array,
                     traj: Transition) -> tuple[jax.Array, jax.Array]:
    """(the reward PPO learns from, the distillation weight of each sample), `[P, T, B]`.

    A method with Distral's regularised reward learns from `r + (alpha/beta) log pi_c -
    (1/beta) log pi_i` (`central_log_prob`: log pi_c of the taken actions, the central policy
    on its own input; pi_i: the acting teacher's stored log-prob); `reward_scale` multiplies
    the whole of it, so beta keeps its meaning whatever the scale. Distillation weights are
    gamma^t (t: the step's index in its episode) for methods with discounted distillation,
    else 1.
    """
    c = model.config
    spec = c.spec
    reward, distill_weight = traj.reward, jnp.ones_like(traj.reward)
    if spec.regularised_reward:
        reward = losses.distral_reward(reward, central_log_prob, traj.log_prob,
                                       c.distral_alpha, c.distral_beta)
    if spec.discounted_distill:
        distill_weight = c.gamma ** traj.episode_step.astype(jnp.float32)
    return reward * c.reward_scale, distill_weight


def _batch(model: Model, central: Any, traj: Transition, last_value: jax.Array,
           c_stats: RunningStats, start: EnvCarry) -> tuple[Batch, Any]:
    """The update's data `[P, T, B, ...]` from a rollout that began at `start`: the rewards
    PPO learns from, GAE, and pi_c on the teachers' samples, once per iteration (Distral's
    reward, and the anchor of the couplings to the central policy, frozen through the update
    like pi_i,old). A recurrent central policy's state runs along the teachers' trajectories
    here, from the carried one; returned second: its state for the next rollout's first step
    (None when feed-forward)."""
    c = model.config
    pi_c, central_log_prob, central_memory = None, traj.log_prob, None
    reset = episode_starts(traj.terminated, traj.truncated) if c.has_memory else None
    if model.has_central:
        end, pi_c = model.central_sequences(central, start.central_memory, traj.obs,
                                            traj.context, traj.action, reset, c_stats)
        pi_c = jax.lax.stop_gradient(pi_c)
        central_log_prob = pi_c.log_prob(traj.action)
        if end is not None:  # reset after a last step that ended an episode, as teachers do
            last_done = jnp.logical_or(traj.terminated[:, -1], traj.truncated[:, -1])
            central_memory = jnp.where(last_done[..., None], 0.0, end)
    reward, distill_weight = training_rewards(model, central_log_prob, traj)
    adv, ret = jax.vmap(lambda r, v, te, tr, fv, lv: gae(r, v, te, tr, fv, lv, c.gamma,
                                                         c.gae_lambda))(
        reward, traj.value, traj.terminated, traj.truncated, traj.final_value, last_value)
    return Batch(obs=traj.obs, context=traj.context, action=traj.action,
                 log_prob=traj.log_prob, value=traj.value, advantages=adv, returns=ret,
                 distill_weight=distill_weight, central=pi_c, central_log_prob=central_log_prob,
                 reset=reset, teacher_start=start.teacher_memory,
                 central_start=start.central_memory), central_memory


def _reset_or_freeze(c: Config, state: TrainState, params: Params, opt: OptState,
                     teacher_stats: RunningStats, central_stats: RunningStats
                     ) -> tuple[Params, OptState, RunningStats]:
    """After the update and the normaliser update: DnC's periodic reset of the teachers to the
    central policy (the next iteration acts as pi_c would), and the distillation tail's
    frozen teachers (they still act; only the central policy learns)."""
    if c.reset_every:
        do_reset = (state.iteration + 1) % c.reset_every == 0
        pick = lambda new, old: jax.tree.map(  # noqa: E731
            lambda n, o: jnp.where(do_reset, n, o), new, old)
        params = params.replace(teacher=pick(reset_teachers(params.teacher, params.central),
                                             params.teacher))
        opt = opt.replace(teacher=pick(reset_actor_momentum(opt.teacher), opt.teacher))
        teacher_stats = pick(reset_stats(teacher_stats, central_stats), teacher_stats)
    if c.distill_tail_steps:
        frozen = state.iteration >= c.teacher_iterations
        keep = lambda old, new: jax.tree.map(  # noqa: E731
            lambda o, n: jnp.where(frozen, o, n), old, new)
        params = params.replace(teacher=keep(state.params.teacher, params.teacher))
        opt = opt.replace(teacher=keep(state.opt.teacher, opt.teacher))
        teacher_stats = keep(state.teacher_stats, teacher_stats)
    return params, opt, teacher_stats


def iteration(model: Model, state: TrainState,
              axis_name: str | None = parallel.AXIS) -> tuple[TrainState, IterationMetrics]:
    """Rollout + GAE + fused update + normaliser update. Pure; run inside `shard_map`.

    Every coefficient is read from `state.hparams` (traced), not from the model's config."""
    model = model.with_hparams(state.hparams)
    c = model.config
    key, k_update = jax.random.split(state.key)
    t_stats, c_stats = state.teacher_stats, state.central_stats
    act = lambda p, o, ctx, m=None: model.teachers(p, o, ctx, t_stats, c_stats,  # noqa: E731
                                                   memory=m)
    value_fn = lambda p, o, ctx, m=None: model.teacher_values(p, o, ctx, t_stats, m)  # noqa: E731
    acting = model.acting_params(state.params.teacher, state.params.central)
    env, traj = rollout(acting, state.env, state.partition, act, value_fn,
                        model.env, c.num_steps, c.context_candidates, c.noise_every,
                        c.resolved_noise_scale)
    own = lambda x, axis: acting_envs(x, c.noise_every, axis)  # noqa: E731 (the teachers' envs)
    last_value = value_fn(acting, env.obs, env.context, env.teacher_memory)
    bad_reward = jnp.logical_not(jnp.all(jnp.isfinite(traj.reward)))
    if axis_name is not None:  # each device saw its own envs' rewards
        bad_reward = jax.lax.psum(bad_reward.astype(jnp.int32), axis_name) > 0
    batch, central_memory = _batch(model, state.params.central, traj, last_value, c_stats,
                                   state.env)
    env = env.replace(central_memory=central_memory)
    params, opt, metrics = update(model, state.params, state.opt, batch, teacher_stats=t_stats,
                                  central_stats=c_stats, weights=state.partition.weights,
                                  key=k_update, axis_name=axis_name,
                                  distill_coef=distill_coef_at(c, state.iteration))
    teacher_stats, central_stats = state.teacher_stats, state.central_stats
    if c.normalize_obs:
        teacher_stats = normalizer.update(teacher_stats, own(traj.obs, 2), (1, 2), axis_name)
        central_stats = normalizer.update(central_stats, traj.obs, (0, 1, 2), axis_name)
    params, opt, teacher_stats = _reset_or_freeze(c, state, params, opt, teacher_stats,
                                                  central_stats)
    seen = own(env.episodes > 0, 1).astype(jnp.float32)
    teacher_return = _psum_mean(jnp.sum(own(env.last_return, 1) * seen, 1), jnp.sum(seen, 1),
                                axis_name)
    episodes = jnp.sum(env.episodes, 1)
    if axis_name is not None:
        episodes = jax.lax.psum(episodes, axis_name)
    new = TrainState(params=params, opt=opt, teacher_stats=teacher_stats,
                     central_stats=central_stats, env=env, partition=state.partition, key=key,
                     iteration=state.iteration + 1, hparams=state.hparams)
    nonfinite = jnp.concatenate([bad_reward[None], metrics.nonfinite])
    return new, IterationMetrics(update=metrics, teacher_return=teacher_return,
                                 episodes=episodes, nonfinite=nonfinite)


def nonfinite_report(nonfinite: np.ndarray, first_iteration: int) -> str | None:
    """The host's reading of the guard flags of one call: None when all is finite, else a
    message naming the first faulty iteration, its terms (and seeds, with a seed axis).

    `nonfinite` is `IterationMetrics.nonfinite` of a call, `[n, K]` or `[n, S, K]` with a
    seed axis; the call ran iterations `first_iteration + 1 ... first_iteration + n`.
    """
    flags = np.asarray(nonfinite, bool)
    if not flags.any():
        return None
    per_iteration = flags.reshape(flags.shape[0], -1).any(axis=1)
    i = int(np.argmax(per_iteration))
    at = flags[i]
    seeds = ""
    if at.ndim == 2:  # [S, K]
        seeds = f" (seeds {np.flatnonzero(at.any(axis=1)).tolist()} of {at.shape[0]})"
        at = at.any(axis=0)
    terms = [f"{n} ({TERM_MEANING[n]})" for n, bad in zip(NONFINITE_TERMS, at) if bad]
    return (f"non-finite values at iteration {first_iteration + i + 1}{seeds} in: "
            + ", ".join(terms))


@dataclasses.dataclass(frozen=True)
class Runner:
    """The sharded training step of one model on one mesh: `step(state, n)` runs the first
    `n` (traced, 1 <= n <= `iterations`) of its `iterations` scanned iterations, so one
    compiled program serves every call of a run, the shorter last one included. Metrics are
    stacked `[iterations, ...]`; rows from `n` on are zeros (those iterations did not run)."""

    model: Model
    mesh: Mesh
    step: Callable[[TrainState, jax.Array], tuple[TrainState, IterationMetrics]]
    state_specs: Any
    iterations: int

    def place(self, state: TrainState) -> TrainState:
        return parallel.put(state, self.mesh, self.state_specs)

    def count(self, n: int) -> jax.Array:
        """The traced trip count `n` of `step`, placed as every process needs it."""
        return parallel.put(jnp.asarray(n, jnp.int32), self.mesh, parallel.PS())

    def compile(self, state: TrainState,
                store: programs.Store | None = None) -> tuple[Runner, bool]:
        """Compile `step` ahead of time for `state` (only its shapes and shardings are read),
        or load it from the program `store`; returns the compiled runner and whether it was
        loaded."""
        n = self.count(self.iterations)
        key = programs.program_key(f"train_chunk x {self.iterations}", self.model.config,
                                   (state, n))
        compiled, loaded = programs.load_or_compile(store, key,
                                                    lambda: self.step.lower(state, n))
        return dataclasses.replace(self, step=compiled), loaded


def make_runner(model: Model, state: TrainState, mesh: Mesh, iterations: int) -> Runner:
    """`step(state, n)` runs up to `iterations` iterations on device; metrics `[iterations, ...]`.

    With several runs (`config.num_runs` R > 1: seeds, sweep members) the state has a leading
    run axis and each iteration is `vmap`-ped over it inside the `shard_map` (the collectives
    over "data" stay per run), so metrics are `[iterations, R, ...]` and the env axis B that
    devices split is axis 2.
    Iterations past `n` are skipped by a `lax.cond`, not computed and discarded.
    """
    one = functools.partial(iteration, model)
    if run_axis(model):
        one = jax.vmap(one)
    # jitted (inlined into the program all the same) so that the shape pass below and the
    # scan body share one trace of the iteration: tracing an MJX step takes seconds
    one = jax.jit(one)

    def train_chunk(state, n):
        skipped = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                               jax.eval_shape(one, state)[1])

        def body(s, i):
            return jax.lax.cond(i < n, one, lambda s: (s, skipped), s)

        return jax.lax.scan(body, state, jnp.arange(iterations))

    state_specs = parallel.specs(state, env_axis=2 if run_axis(model) else 1)
    return Runner(model, mesh, parallel.shard(train_chunk, mesh, state_specs, extra_args=1),
                  state_specs, iterations)
