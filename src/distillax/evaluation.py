"""Evaluation, below both entry points: held-out contexts and keys, episode returns, reports and
95% intervals over seeds.

A run's held-out evaluation is one compiled program (`Evaluator`): every seed's central
policy or teachers, greedy or sampled, on the fixed held-out contexts. Who acts and how are
traced inputs, so the periodic evaluation during training (central, greedy) and the final
report (all four) run the same executable, compiled once, ahead of time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from distillax import parallel, programs
from distillax.config import Config
from distillax.envs.base import ContextualEnv
from distillax.model import Model
from distillax.policy import Policies, central_policy, own_cell, teacher_policy

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


def episode_returns(policy: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
                    env: ContextualEnv, contexts: jax.Array, key: jax.Array) -> jax.Array:
    """Undiscounted return of one episode in each context `[N, d]` -> `[N]`.

    `policy(obs [N, obs], context [N, d], key) -> action [N, ...]`. Counts reward up to each
    episode's first termination or truncation, and stops stepping once every episode has
    ended (at most the env's maximum episode length): a policy that fails fast is evaluated
    fast. Step t acts with `fold_in(key_run, t)`.
    """
    n = contexts.shape[0]
    key_reset, key_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset)(jax.random.split(key_reset, n), contexts)

    def running(carry):
        t, _, _, _, alive = carry
        return jnp.logical_and(t < env.max_steps, jnp.any(alive))

    def step(carry):
        t, obs, state, total, alive = carry
        k_act, k_env = jax.random.split(jax.random.fold_in(key_run, t))
        action = policy(obs, contexts, k_act)
        # no reset: an ended episode's later steps are never counted
        out = jax.vmap(env.transition)(jax.random.split(k_env, n), state, action, contexts)
        total = total + jnp.where(alive, out.reward, 0.0)
        alive = alive & ~(out.terminated | out.truncated)
        return t + 1, out.obs, out.state, total, alive

    init = (jnp.zeros((), jnp.int32), obs, state, jnp.zeros(n), jnp.ones(n, bool))
    return jax.lax.while_loop(running, step, init)[3]


def policy_returns(model: Model, policies: Policies, contexts: jax.Array, key: jax.Array,
                   greedy: Any, teachers: Any) -> jax.Array:
    """Returns `[N]` on `contexts [N, d]` of the central policy, or (`teachers`) of each
    context's own-cell teacher; `greedy` and `teachers` may be traced bools. For a method
    without a central policy its single teacher acts either way."""
    central = central_policy(model, policies, greedy)
    own = teacher_policy(model, policies, own_cell(model, policies.partition), greedy)
    if isinstance(teachers, bool):
        act = own if teachers else central
    else:
        def act(obs, context, k):
            return jax.lax.cond(teachers, own, central, obs, context, k)
    return episode_returns(act, model.env, contexts, key)


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
    """The run's held-out evaluation, compiled once: `returns(policies, greedy, teachers)` ->
    `[S, N]`, every seed's returns on the held-out contexts with its own key."""

    model: Model
    contexts: np.ndarray  # [N, d]
    keys: jax.Array  # [S, 2]
    program: Any = None  # the compiled executable, set by `compile`

    def _fn(self) -> Callable:
        def run(policies, contexts, keys, greedy, teachers):
            return jax.vmap(lambda p, k: policy_returns(self.model, p, contexts, k, greedy,
                                                        teachers))(policies, keys)

        return jax.jit(run)

    def compile(self, policies: Policies, store: programs.Store | None = None) -> bool:
        """Compile for `policies` (`run_policies` of a state; only shapes are read), or load
        from the program `store`; returns whether it was loaded."""
        flag = jnp.asarray(True)
        args = (policies, jnp.asarray(self.contexts), self.keys, flag, flag)
        key = programs.program_key("evaluation", self.model.config, args)
        self.program, loaded = programs.load_or_compile(store, key,
                                                        lambda: self._fn().lower(*args))
        return loaded

    def returns(self, policies: Policies, greedy: bool, teachers: bool) -> np.ndarray:
        if self.program is None:
            self.compile(policies)
        return np.asarray(self.program(policies, jnp.asarray(self.contexts), self.keys,
                                       jnp.asarray(greedy), jnp.asarray(teachers)))


def make_evaluator(model: Model) -> Evaluator:
    return Evaluator(model, heldout_contexts(model), eval_keys(model.config))


def summarise(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's report as it is; several runs' (seeds): the means under the same keys, and
    per return `<key>_seeds` (per run) and `<key>_ci95` ([low, high], `mean_ci95`), with the
    runs' own reports as `per_seed`."""
    if len(reports) == 1:
        return reports[0]
    out: dict[str, Any] = {"contexts": reports[0]["contexts"], "seeds": len(reports),
                           "interval": "95% Student-t over seeds"}
    for who, greedy in VARIANTS:
        k = f"{who}_{'greedy' if greedy else 'sampled'}"
        per = [r[k] for r in reports]
        m, lo, hi = mean_ci95(per)
        out[k], out[f"{k}_seeds"], out[f"{k}_ci95"] = m, per, [lo, hi]
    out["per_seed"] = reports
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
    """Mean held-out returns of central and teachers, greedy (mode) and sampled actions.

    One run: `{central_greedy, central_sampled, teachers_greedy, teachers_sampled}`, plus the
    greedy returns per context. Several seeds: `summarise`d over them. A sweep: the summary of
    all its runs at the top level, and `members`, each member's summary over its seeds with
    the values it was trained with.
    """
    R = evaluator.keys.shape[0]
    per_run: list[dict[str, Any]] = [{"contexts": int(evaluator.contexts.shape[0])}
                                     for _ in range(R)]
    done: dict[tuple[bool, bool], np.ndarray] = {}
    for who, greedy in VARIANTS:
        # without a central policy the single teacher is "central" too: played once
        teachers = who == "teachers" and evaluator.model.has_central
        if (greedy, teachers) not in done:
            done[greedy, teachers] = evaluator.returns(policies, greedy, teachers)
        r = done[greedy, teachers]  # [R, N]
        name = f"{who}_{'greedy' if greedy else 'sampled'}"
        for s, rep in enumerate(per_run):
            rep[name] = float(r[s].mean())
            if greedy:
                rep[f"{name}_per_context"] = r[s].tolist()
    config = evaluator.model.config
    if not config.sweep:
        return summarise(per_run)
    out = summarise(per_run)
    out["members"] = [{"member": k, "values": values, **summarise(group)} for k, (values, group)
                      in enumerate(zip(member_values(config), by_member(config, per_run)))]
    return out


# --- the evaluator's grid: every policy on every context -------------------------------------

def grid_returns(model: Model, policies: Policies, contexts: np.ndarray, key: jax.Array,
                 greedy: bool) -> dict[str, np.ndarray]:
    """One episode per context `[N, d]` for the central policy and each teacher.

    Returns central `[N]`, teachers `[P, N]` (teacher i in every context), cell `[N]` (the
    partition of each context) and own `[N]` (each context by its own cell's teacher). All
    policies use the same key, hence the same initial states.
    """
    run = grid_program(model, greedy)
    return jax.tree.map(np.asarray, run(policies, jnp.asarray(contexts), key))


def grid_program(model: Model, greedy: bool) -> Any:
    """`grid_returns`' jitted program `(policies, contexts [N, d], key) -> returns`."""
    from distillax.contexts import assign

    P = model.config.partitions

    @jax.jit
    def run(policies, contexts, key):
        central = episode_returns(central_policy(model, policies, greedy), model.env,
                                  contexts, key)

        def teacher(i):
            which = lambda c: jnp.full(c.shape[:-1], i, jnp.int32)  # noqa: E731
            return episode_returns(teacher_policy(model, policies, which, greedy), model.env,
                                   contexts, key)

        teachers = jax.vmap(teacher)(jnp.arange(P))
        cell = assign(policies.partition, model.env.space, contexts)
        own = teachers[cell, jnp.arange(contexts.shape[0])]
        return {"central": central, "teachers": teachers, "cell": cell, "own": own}

    return run
