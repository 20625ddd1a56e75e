"""Evaluation, below both entry points: held-out contexts and keys, episode returns, reports and
95% intervals over seeds.

A run's held-out evaluation is one compiled program (`Evaluator`): every seed's central
policy or teachers, greedy or sampled, on the fixed held-out contexts. Who acts and how are
traced inputs, so the periodic evaluation during training (central, greedy) and the final
report (all four) run the same executable, compiled once, ahead of time.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from distillax import parallel, programs
from distillax.config import Config
from distillax.contexts import ContextSpace
from distillax.envs.base import ContextualEnv
from distillax.model import Model
from distillax.policy import (
    Policies,
    central_dist,
    central_policy,
    central_step,
    choose,
    initial_memory,
    own_cell,
    recurrent_acts,
    teacher_dist,
    teacher_policy,
    teacher_step,
)

VARIANTS = (("central", True), ("central", False), ("teachers", True), ("teachers", False))


def mean_ci95(values: Any) -> tuple[float, float, float]:
    """(mean, low, high) of per-seed values: a two-sided 95% Student-t interval,
    mean -/+ t_{0.975, S-1} * sd / sqrt(S) with the sample sd (ddof 1); (m, m, m) for S = 1."""
    v = np.asarray(values, np.float64)
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    import scipy.stats  # only for intervals over seeds (its import costs ~0.5 s of start-up)

    half = float(scipy.stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half


def heldout_contexts(model: Model) -> np.ndarray:
    """The fixed held-out contexts `[N, d]` (from their own key, never a training one)."""
    return model.env.space.spread(model.config.eval_contexts, jax.random.PRNGKey(2**31 - 1))


def eval_keys(config: Config) -> jax.Array:
    """Held-out evaluation key of each run `[R, 2]`: run r = k S + s (member k, seed s) uses
    `PRNGKey(seed + s + 1)`, as the single run of that member and seed does."""
    return jnp.stack([jax.random.PRNGKey(config.seed + s + 1)
                      for _ in config.members for s in range(config.seeds)])


@struct.dataclass
class Episodes:
    """One episode per context, leaves `[N]` (`[R, N]` from the `Evaluator`): its return, its
    steps until its first end, the sums over those steps of what a `watch` measured (`fit`:
    name -> `[N]`, empty without one), the cell of its context (-1 where not known), and what
    a `trace` recorded at each step (leaves `[T, N, ...]`; None without one)."""

    returns: jax.Array
    steps: jax.Array
    fit: dict[str, jax.Array]
    cell: jax.Array
    trace: Any = None


Watch = Callable[[jax.Array, jax.Array], dict[str, jax.Array]]
Trace = Callable[[Any, jax.Array], Any]


def episodes(policy: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
             env: ContextualEnv, contexts: jax.Array, key: jax.Array,
             watch: Watch | None = None, trace: Trace | None = None,
             max_steps: int | None = None, copies: int = 1, memory: Any = None) -> Episodes:
    """One episode in each context `[N, d]`, undiscounted.

    `policy(obs [N, obs], context [N, d], key) -> action [N, ...]`. Counts reward up to each
    episode's first termination or truncation, and stops stepping once every episode has
    ended (at most `max_steps`, by default the env's maximum episode length): a policy that
    fails fast is evaluated fast. Step t acts with `fold_in(key_run, t)`. `watch(obs, context)
    -> {name: [N]}` is measured at every state acted on before the episode's end, and summed;
    `trace(env_state, context) -> leaves [N, ...]` is kept at every step t < T = `max_steps`
    (what a video draws: `render.record`; zeros past the loop's last step). `copies` C plays
    every context C times with the same keys, as one batch of C x N rows (row c N + n: copy c
    of context n; the leaves `[C N]`): two policies from the same initial states in one loop
    (`render.record`), where a vmap over them would select over every env-state leaf.
    `memory`: a recurrent policy's memory of fresh episodes for the C x N rows (any pytree,
    e.g. a pair of roles' memories, one of them None when feed-forward; None: the policy is
    feed-forward), carried through the loop: then `policy(obs, context, key, memory) ->
    (action, memory')` and `watch(obs, context, memory)` sees the memory the step acts with.
    (Each episode is played once, from a reset, so the memory is never reset inside the loop.)
    """
    tile = lambda x: jnp.concatenate([x] * copies)  # noqa: E731
    n, contexts = contexts.shape[0] * copies, tile(contexts)
    T = int(max_steps or env.max_steps)
    key_reset, key_run = jax.random.split(key)
    keys = lambda k: tile(jax.random.split(k, n // copies))  # noqa: E731  one per context
    obs, state = jax.vmap(env.reset)(keys(key_reset), contexts)
    recurrent = memory is not None
    def watched(o, c, m):
        return watch(o, c, m) if recurrent else watch(o, c)

    measures = jax.eval_shape(watched, obs, contexts, memory) if watch else {}
    kept = (jax.tree.map(lambda x: jnp.zeros((T,) + x.shape, x.dtype), trace(state, contexts))
            if trace else None)

    def running(carry):
        t, alive = carry[0], carry[-2]
        return jnp.logical_and(t < T, jnp.any(alive))

    def step(carry):
        t, obs, state, total, steps, fit, kept, alive, memory = carry
        if watch:
            now = watched(obs, contexts, memory)
            fit = {k: v + jnp.where(alive, now[k], 0.0) for k, v in fit.items()}
        if trace:
            kept = jax.tree.map(lambda b, x: b.at[t].set(x), kept, trace(state, contexts))
        k_act, k_env = jax.random.split(jax.random.fold_in(key_run, t))
        if recurrent:
            action, memory = policy(obs, contexts, k_act, memory)
        else:
            action = policy(obs, contexts, k_act)
        # no reset: an ended episode's later steps are never counted
        out = jax.vmap(env.transition)(keys(k_env), state, action, contexts)
        total = total + jnp.where(alive, out.reward, 0.0)
        steps = steps + alive
        alive = alive & ~(out.terminated | out.truncated)
        return t + 1, out.obs, out.state, total, steps, fit, kept, alive, memory

    init = (jnp.zeros((), jnp.int32), obs, state, jnp.zeros(n), jnp.zeros(n, jnp.int32),
            {k: jnp.zeros(n) for k in measures}, kept, jnp.ones(n, bool), memory)
    _, _, _, total, steps, fit, kept, _, _ = jax.lax.while_loop(running, step, init)
    return Episodes(returns=total, steps=steps, fit=fit, cell=jnp.full(n, -1, jnp.int32),
                    trace=kept)


def episode_returns(policy: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
                    env: ContextualEnv, contexts: jax.Array, key: jax.Array) -> jax.Array:
    """The returns `[N]` of `episodes(policy, env, contexts, key)`."""
    return episodes(policy, env, contexts, key).returns


# Who acts in `policy_episodes` (a traced int in the evaluator's one program)
CENTRAL, TEACHERS, RANDOM = 0, 1, 2


def fit_watch(model: Model, policies: Policies
              ) -> Callable[[jax.Array, jax.Array], dict[str, jax.Array]]:
    """How closely the central policy follows each context's own-cell teacher i at a state:
    `kl` = KL(pi_i || pi_c), and `action_gap`, the distance between their greedy actions
    (Euclidean, in the action space; for discrete actions 1 where they differ, so its mean is
    the disagreement rate). `(obs [N, obs], context [N, d]) -> {name: [N]}`."""
    teacher = teacher_dist(model, policies, own_cell(model, policies.partition))
    central = central_dist(model, policies)

    return lambda obs, context: _fit(model, teacher(obs, context), central(obs, context))


def _fit(model: Model, t: Any, c: Any) -> dict[str, jax.Array]:
    """`fit_watch`'s measures of teacher `t` and central `c` distributions `[N]`."""
    a, b = t.mode(), c.mode()
    gap = ((a != b).astype(jnp.float32) if model.env.discrete
           else jnp.linalg.norm(a - b, axis=-1))
    return {"kl": t.kl(c), "action_gap": gap}


def random_policy(env: ContextualEnv) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """Actions drawn uniformly from the env's action space (the floor of the kept fraction)."""
    space = env.env.action_space(env.env.default_params)

    def policy(obs, context, key):
        return jax.vmap(space.sample)(jax.random.split(key, obs.shape[0]))

    return policy


def policy_episodes(model: Model, policies: Policies, contexts: jax.Array, key: jax.Array,
                    greedy: Any, who: Any, fit: bool = False, trace: Trace | None = None,
                    max_steps: int | None = None) -> Episodes:
    """`episodes` on `contexts [N, d]` of the central policy, each context's own-cell teacher
    or a random policy (`who`: CENTRAL, TEACHERS, RANDOM; `greedy` and `who` may be traced).
    With `fit` (and a central policy) they carry `fit_watch`'s sums; `cell` is each context's;
    `trace` and `max_steps` are `episodes`'.
    For a method without a central policy its single teacher acts as the central policy."""
    if model.config.has_memory:
        out = _recurrent_episodes(model, policies, contexts, key, greedy, who, fit, trace,
                                  max_steps)
        return out.replace(cell=own_cell(model, policies.partition)(contexts))
    acting = [central_policy(model, policies, greedy),
              teacher_policy(model, policies, own_cell(model, policies.partition), greedy),
              random_policy(model.env)]

    def act(obs, context, k):
        return jax.lax.switch(who, acting, obs, context, k)

    watch = fit_watch(model, policies) if fit and model.has_central else None
    out = episodes(act, model.env, contexts, key, watch, trace, max_steps)
    return out.replace(cell=own_cell(model, policies.partition)(contexts))


def _recurrent_episodes(model: Model, policies: Policies, contexts: jax.Array, key: jax.Array,
                        greedy: Any, who: Any, fit: bool, trace: Trace | None,
                        max_steps: int | None) -> Episodes:
    """`policy_episodes` with a recurrent role: the central policy and the own-cell teacher
    both step at every state, whoever acts, so that each one's memory runs along the acting
    trajectory (what `fit_watch`'s comparison of the two needs); memory (teacher, central)."""
    n = contexts.shape[0]
    teacher = teacher_step(model, policies, own_cell(model, policies.partition))
    central = central_step(model, policies)
    rand = random_policy(model.env)

    def act(obs, context, k, memory):
        d_t, after_t = teacher(obs, context, memory[0])
        d_c, after_c = central(obs, context, memory[1])
        actions = jnp.stack([choose(d_c, k, greedy), choose(d_t, k, greedy),
                             rand(obs, context, k).astype(d_c.mode().dtype)])
        action = actions[who]
        return action, (after_t(action), after_c(action))

    def watch(obs, context, memory):
        t, c = teacher(obs, context, memory[0])[0], central(obs, context, memory[1])[0]
        return _fit(model, t, c)

    memory = (initial_memory(model, n, central=False), initial_memory(model, n, central=True))
    watching = watch if fit and model.has_central else None
    return episodes(act, model.env, contexts, key, watching, trace, max_steps, memory=memory)


def policy_returns(model: Model, policies: Policies, contexts: jax.Array, key: jax.Array,
                   greedy: Any, teachers: Any) -> jax.Array:
    """Returns `[N]` on `contexts [N, d]` of the central policy, or (`teachers`) of each
    context's own-cell teacher; `greedy` and `teachers` may be traced bools."""
    who = jnp.where(teachers, TEACHERS, CENTRAL)
    return policy_episodes(model, policies, contexts, key, greedy, who).returns


def run_policies(model: Model, state: Any) -> Policies:
    """What acting reads from a train state, every leaf with a leading run axis `[R, ...]`
    (added for a single run), as host arrays: the env carry and optimizer states are left
    out, so every process of a multi-process run can evaluate them on its own devices (these
    parts are replicated)."""
    p = parallel.host_local(Policies(teacher=state.params.teacher,
                                     central=state.params.central,
                                     teacher_stats=state.teacher_stats,
                                     central_stats=state.central_stats,
                                     partition=state.partition, hparams=state.hparams))
    return p if model.config.num_runs > 1 else jax.tree.map(lambda x: x[None], p)


@dataclasses.dataclass
class Evaluator:
    """The run's held-out evaluation, compiled once: `episodes(policies, greedy, who)` ->
    `Episodes` of leaves `[R, N]`, every run's episodes on the held-out contexts with its own
    key, with the central policy's fit to its teachers (`fit_watch`) where there is one."""

    model: Model
    contexts: np.ndarray  # [N, d]
    keys: jax.Array  # [R, 2]
    program: Any = None  # the compiled executable, set by `compile`
    floor: np.ndarray | None = None  # [R] a random policy's mean return, once played

    def _fn(self) -> Callable:
        def run(policies, contexts, keys, greedy, who):
            return jax.vmap(lambda p, k: policy_episodes(self.model, p, contexts, k, greedy,
                                                         who, fit=True))(policies, keys)

        return jax.jit(run)

    def _args(self, policies: Policies, greedy: Any, who: Any) -> tuple[Any, ...]:
        return (policies, jnp.asarray(self.contexts), self.keys, jnp.asarray(greedy),
                jnp.asarray(who, jnp.int32))

    def compile(self, policies: Policies, store: programs.Store | None = None) -> bool:
        """Compile for `policies` (`run_policies` of a state; only shapes are read), or load
        from the program `store`; returns whether it was loaded."""
        args = self._args(policies, True, CENTRAL)
        key = programs.program_key("evaluation", self.model.config, args)
        self.program, loaded = programs.load_or_compile(store, key,
                                                        lambda: self._fn().lower(*args))
        return loaded

    def episodes(self, policies: Policies, greedy: bool, who: int) -> Episodes:
        if self.program is None:
            self.compile(policies)
        return jax.tree.map(np.asarray, self.program(*self._args(policies, greedy, who)))

    def returns(self, policies: Policies, greedy: bool, teachers: bool) -> np.ndarray:
        """Returns `[R, N]` of the central policy or (`teachers`) the own-cell teachers."""
        return self.episodes(policies, greedy, TEACHERS if teachers else CENTRAL).returns


def make_evaluator(model: Model) -> Evaluator:
    return Evaluator(model, heldout_contexts(model), eval_keys(model.config))


# The states the fit is measured on: (name, who acts, greedy). The teachers' greedy states in
# their own cells, their sampled states (the training distribution), and the central
# policy's own greedy states (which it never trains on).
FIT_STATES = (("teacher_greedy", TEACHERS, True), ("teacher_sampled", TEACHERS, False),
              ("central_greedy", CENTRAL, True))


def fit_by_cell(ep: Episodes, partitions: int) -> dict[str, np.ndarray]:
    """Each fit measure per cell `[R, P]`: its sum over the steps of the cell's episodes over
    their number of steps (NaN for a cell without held-out contexts). `ep` leaves `[R, N]`."""
    onehot = ep.cell[..., None] == np.arange(partitions)  # [R, N, P]
    steps = (ep.steps[..., None] * onehot).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {k: np.where(steps > 0, (v[..., None] * onehot).sum(axis=1) / steps, np.nan)
                for k, v in ep.fit.items()}


def kept(central: np.ndarray, teachers: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """How much of its teachers' return the central policy keeps, per run: (central - floor)
    / (teachers - floor), with `floor` a random policy's return (so a negative-return task
    reads on the same scale as a positive one); NaN where the teachers are at the floor."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(teachers != floor, (central - floor) / (teachers - floor), np.nan)


def fit_fields(evaluator: Evaluator, policies: Policies,
               done: dict[tuple[bool, int], Episodes]) -> list[dict[str, Any]]:
    """Per run: `kept` (of the greedy returns), the random floor `random_return`, and per
    state of `FIT_STATES` the cells' `kl_<state>` and `action_gap_<state>` `[P]`. Runs the
    variants `done` (keyed (greedy, who)) does not hold yet, and adds them to it. Empty dicts
    for a method without a central policy."""
    R = evaluator.keys.shape[0]
    if not evaluator.model.has_central:
        return [{} for _ in range(R)]
    for _, who, greedy in FIT_STATES:
        if (greedy, who) not in done:
            done[greedy, who] = evaluator.episodes(policies, greedy, who)
    if evaluator.floor is None:  # the same for every evaluation of the run: played once
        evaluator.floor = evaluator.episodes(policies, False, RANDOM).returns.mean(axis=1)
    central, teachers = (done[True, w].returns.mean(axis=1) for w in (CENTRAL, TEACHERS))
    out = [{"kept": float(k), "random_return": float(f)}
           for k, f in zip(kept(central, teachers, evaluator.floor), evaluator.floor)]
    P = evaluator.model.config.partitions
    for name, who, greedy in FIT_STATES:
        for measure, cells in fit_by_cell(done[greedy, who], P).items():
            for r, rep in enumerate(out):
                rep[f"{measure}_{name}"] = cells[r].tolist()
    return out


def summarise(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's report as it is; several runs' (seeds): the means under the same keys (per
    cell for the fit's lists, NaN-free cells only), and per return and `kept`
    `<key>_seeds` (per run) and `<key>_ci95` ([low, high], `mean_ci95`), with the runs' own
    reports as `per_seed`."""
    if len(reports) == 1:
        return reports[0]
    out: dict[str, Any] = {"contexts": reports[0]["contexts"], "seeds": len(reports),
                           "interval": "95% Student-t over seeds"}
    keys = [f"{who}_{'greedy' if greedy else 'sampled'}" for who, greedy in VARIANTS]
    for k in keys + ["kept", "random_return"]:
        if k in reports[0]:
            per = [r[k] for r in reports]
            m, lo, hi = mean_ci95(per)
            out[k], out[f"{k}_seeds"], out[f"{k}_ci95"] = m, per, [lo, hi]
    out.update({k: v for k, v in cell_means(reports).items() if isinstance(v, list)})
    out["per_seed"] = reports
    return out


def cell_means(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' mean of each number and, cell by cell, of each list (NaN-free cells only:
    a cell without held-out contexts in one run), per-context lists left out."""
    out: dict[str, Any] = {}
    with warnings.catch_warnings():  # a cell empty in every run stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        for k, v in reports[0].items():
            if isinstance(v, float) or (isinstance(v, list) and not k.endswith("_per_context")):
                mean = np.nanmean([r[k] for r in reports], axis=0)
                out[k] = mean.tolist() if isinstance(v, list) else float(mean)
    return out


def by_member(config: Config, per_run: list[Any]) -> list[list[Any]]:
    """Per-run values (run r = k S + s) grouped by sweep member: K lists of S."""
    S = config.seeds
    return [per_run[k * S:(k + 1) * S] for k in range(len(config.members))]


def member_values(config: Config) -> list[dict[str, float]]:
    """Each sweep member's values of the swept fields."""
    names = [name for name, _ in config.sweep]
    return [{n: getattr(m, n) for n in names} for m in config.members]


def report(evaluator: Evaluator, policies: Policies) -> dict[str, Any]:
    """Mean held-out returns of central and teachers, greedy (mode) and sampled actions, and
    the central policy's fit to its teachers (`fit_fields`).

    One run: `{central_greedy, central_sampled, teachers_greedy, teachers_sampled}`, plus the
    greedy returns per context and the fit. Several seeds: `summarise`d over them. A sweep:
    the summary of all its runs at the top level, and `members`, each member's summary over
    its seeds with the values it was trained with.
    """
    R = evaluator.keys.shape[0]
    per_run: list[dict[str, Any]] = [{"contexts": int(evaluator.contexts.shape[0])}
                                     for _ in range(R)]
    done: dict[tuple[bool, int], Episodes] = {}
    for who, greedy in VARIANTS:
        # without a central policy the single teacher is "central" too: played once
        acting = TEACHERS if who == "teachers" and evaluator.model.has_central else CENTRAL
        if (greedy, acting) not in done:
            done[greedy, acting] = evaluator.episodes(policies, greedy, acting)
        r = done[greedy, acting].returns  # [R, N]
        name = f"{who}_{'greedy' if greedy else 'sampled'}"
        for s, rep in enumerate(per_run):
            rep[name] = float(r[s].mean())
            if greedy:
                rep[f"{name}_per_context"] = r[s].tolist()
    for rep, fit in zip(per_run, fit_fields(evaluator, policies, done)):
        rep.update(fit)
    config = evaluator.model.config
    if not config.sweep:
        return summarise(per_run)
    out = summarise(per_run)
    out["members"] = [{"member": k, "values": values, **summarise(group)} for k, (values, group)
                      in enumerate(zip(member_values(config), by_member(config, per_run)))]
    return out


# --- the evaluator's grid: every policy on every context -------------------------------------

def split_dims(space: ContextSpace) -> tuple[list[int], list[int], list[tuple[float, ...]]]:
    """(continuous dims, discrete dims, every combination of the discrete dims' values)."""
    cont = [k for k in range(space.dim) if space.values[k] is None]
    disc = [k for k in range(space.dim) if space.values[k] is not None]
    combos = list(itertools.product(*[space.values[k] for k in disc])) or [()]
    return cont, disc, combos


def middle(space: ContextSpace) -> np.ndarray:
    """The centre of the space `[d]`: mid-range (a discrete dim's entry is overwritten)."""
    return (np.asarray(space.low, np.float32) + np.asarray(space.high, np.float32)) / 2


def grid_contexts(space: ContextSpace, n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """About `n` contexts on a regular grid over the whole space: `[N, d]`, and its shape.

    Task sets: every task once. Products: every combination of discrete values times a grid
    of k points (bounds included) per continuous dimension, k = the largest with N <= n
    (at least 2).
    """
    if space.tasks is not None:
        return np.asarray(space.tasks, np.float32), {"tasks": len(space.tasks)}
    cont, disc, combos = split_dims(space)
    k = _grid_points(n, len(cont), len(combos))
    axes = {space.names[j]: np.linspace(space.low[j], space.high[j], k) for j in cont}
    rows = []
    for combo in combos:
        for point in itertools.product(*axes.values()):
            c = middle(space)
            c[cont] = point
            c[disc] = combo
            rows.append(c)
    shape = {space.names[j]: k for j in cont} | {space.names[j]: len(space.values[j])
                                                  for j in disc}
    return np.asarray(rows, np.float32), shape


def _grid_points(n: int, continuous: int, combos: int) -> int:
    """k, the grid's points per continuous dimension: the largest with combos x k^continuous
    <= n, at least 2 (1 without continuous dimensions)."""
    return max(2, int(math.floor((n / combos) ** (1 / continuous) + 1e-9))) if continuous else 1


def context_counts(space: ContextSpace, contexts: int, resolution: int) -> tuple[int, int]:
    """(grid contexts, slice contexts) that `grid_contexts(space, contexts)`, `slices_2d(space,
    resolution)` and `slices_1d(space, 2 resolution - 1)` make, counted without making them."""
    if space.tasks is not None:
        return len(space.tasks), 0
    cont, _, combos = split_dims(space)
    c, n = len(cont), len(combos)
    return (n * _grid_points(contexts, c, n) ** c,
            n * (c * (c - 1) // 2 * resolution**2 + c * (2 * resolution - 1)))


@dataclasses.dataclass(frozen=True)
class Slice2D:
    """Contexts `[combos, res_b, res_a, d]` over dims a (x axis) and b (y axis)."""

    a: int
    b: int
    xs: np.ndarray  # [res] values of dim a
    ys: np.ndarray  # [res] values of dim b
    combos: list[tuple[float, ...]]
    contexts: np.ndarray


def slices_2d(space: ContextSpace, res: int) -> list[Slice2D]:
    """One slice per pair of continuous dims; the other continuous dims at mid-range."""
    cont, disc, combos = split_dims(space)
    out = []
    for a, b in itertools.combinations(cont, 2):
        xs = np.linspace(space.low[a], space.high[a], res, dtype=np.float32)
        ys = np.linspace(space.low[b], space.high[b], res, dtype=np.float32)
        c = np.broadcast_to(middle(space), (len(combos), res, res, space.dim)).copy()
        c[..., a] = xs[None, None, :]
        c[..., b] = ys[None, :, None]
        for i, combo in enumerate(combos):
            c[i][..., disc] = np.asarray(combo, np.float32)
        out.append(Slice2D(a, b, xs, ys, combos, c))
    return out


def slices_1d(space: ContextSpace, res: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(dim, values `[res]`, contexts `[combos, res, d]`) per continuous dim."""
    cont, disc, combos = split_dims(space)
    out = []
    for a in cont:
        xs = np.linspace(space.low[a], space.high[a], res, dtype=np.float32)
        c = np.broadcast_to(middle(space), (len(combos), res, space.dim)).copy()
        c[..., a] = xs[None, :]
        for i, combo in enumerate(combos):
            c[i][:, disc] = np.asarray(combo, np.float32)
        out.append((a, xs, c))
    return out



def grid_returns(model: Model, policies: Policies, contexts: np.ndarray, key: jax.Array,
                 greedy: bool) -> dict[str, np.ndarray]:
    """One episode per context `[N, d]` for the central policy and each teacher.

    Returns central `[N]`, teachers `[P, N]` (teacher i in every context), cell `[N]` (the
    partition of each context), own `[N]` (each context by its own cell's teacher), and the
    central policy's fit (`fit_watch`) summed over the states of its own episodes and of the
    own teachers' (`central_<measure>`, `own_<measure>` `[N]`), with the steps they sum over
    (`central_steps`, `own_steps`). All policies use the same key, hence the same initial
    states.
    """
    run = grid_program(model, greedy)
    return jax.tree.map(np.asarray, run(policies, jnp.asarray(contexts), key))


def grid_program(model: Model, greedy: bool) -> Any:
    """`grid_returns`' jitted program `(policies, contexts [N, d], key) -> returns`."""
    from distillax.contexts import assign

    P = model.config.partitions

    @jax.jit
    def run(policies, contexts, key):
        fit = {who: policy_episodes(model, policies, contexts, key, greedy, acting, fit=True)
               for who, acting in (("central", CENTRAL), ("own", TEACHERS))}
        central = fit["central"].returns

        def teacher(i):
            which = lambda c: jnp.full(c.shape[:-1], i, jnp.int32)  # noqa: E731
            memory = initial_memory(model, contexts.shape[0], central=False)
            if memory is not None:
                act = recurrent_acts(teacher_step(model, policies, which), greedy)
                return episodes(act, model.env, contexts, key, memory=memory).returns
            return episode_returns(teacher_policy(model, policies, which, greedy), model.env,
                                   contexts, key)

        teachers = jax.vmap(teacher)(jnp.arange(P))
        cell = assign(policies.partition, model.env.space, contexts)
        own = teachers[cell, jnp.arange(contexts.shape[0])]
        sums = {f"{who}_{k}": v for who, ep in fit.items()
                for k, v in {**ep.fit, "steps": ep.steps}.items()}
        return {"central": central, "teachers": teachers, "cell": cell, "own": own, **sums}

    return run
