"""Evaluation, below both entry points: held-out contexts and keys, episode returns, reports and
95% intervals over seeds.

A run's held-out evaluation is one compiled program (`Evaluator`): every seed's central
policy or teachers, greedy or sampled, on the fixed held-out contexts. Who acts and how are
traced inputs, so the periodic evaluation during training (central, greedy) and the final
report (all four) run the same executable, compiled once, ahead of time.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from distillax import parallel
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
    """Held-out evaluation key of each seed `[S, 2]`: `PRNGKey(seed + s + 1)`, as the run of
    that seed alone uses."""
    return jnp.stack([jax.random.PRNGKey(config.seed + s + 1) for s in range(config.seeds)])


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
        out = jax.vmap(env.step)(jax.random.split(k_env, n), state, action, contexts, contexts)
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


def seed_policies(model: Model, state: Any) -> Policies:
    """What acting reads from a train state, every leaf with a leading seed axis `[S, ...]`
    (added for a single-seed run), as host arrays: the env carry and optimizer states are
    left out, so every process of a multi-process run can evaluate them on its own devices
    (these parts are replicated)."""
    p = parallel.host_local(Policies(teacher=state.params.teacher,
                                     central=state.params.central,
                                     teacher_stats=state.teacher_stats,
                                     central_stats=state.central_stats,
                                     partition=state.partition))
    return p if model.config.seeds > 1 else jax.tree.map(lambda x: x[None], p)


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

    def compile(self, policies: Policies) -> "Evaluator":
        """Compile for `policies` (`seed_policies` of a state; only shapes are read)."""
        flag = jnp.asarray(True)
        self.program = self._fn().lower(policies, jnp.asarray(self.contexts), self.keys, flag,
                                        flag).compile()
        return self

    def returns(self, policies: Policies, greedy: bool, teachers: bool) -> np.ndarray:
        if self.program is None:
            self.compile(policies)
        return np.asarray(self.program(policies, jnp.asarray(self.contexts), self.keys,
                                       jnp.asarray(greedy), jnp.asarray(teachers)))


def make_evaluator(model: Model) -> Evaluator:
    return Evaluator(model, heldout_contexts(model), eval_keys(model.config))


def report(evaluator: Evaluator, policies: Policies) -> dict[str, Any]:
    """Mean held-out returns of central and teachers, greedy (mode) and sampled actions.

    One seed: `{central_greedy, central_sampled, teachers_greedy, teachers_sampled}`, plus the
    greedy returns per context. Several: the means over seeds under the same keys, and per
    return `<key>_seeds` and `<key>_ci95` ([low, high], `mean_ci95`), with `per_seed` reports.
    """
    per_seed: list[dict[str, Any]] = [
        {"contexts": int(evaluator.contexts.shape[0])} for _ in range(evaluator.keys.shape[0])]
    done: dict[tuple[bool, bool], np.ndarray] = {}
    for who, greedy in VARIANTS:
        # without a central policy the single teacher is "central" too: played once
        teachers = who == "teachers" and evaluator.model.has_central
        if (greedy, teachers) not in done:
            done[greedy, teachers] = evaluator.returns(policies, greedy, teachers)
        r = done[greedy, teachers]  # [S, N]
        name = f"{who}_{'greedy' if greedy else 'sampled'}"
        for s, rep in enumerate(per_seed):
            rep[name] = float(r[s].mean())
            if greedy:
                rep[f"{name}_per_context"] = r[s].tolist()
    if len(per_seed) == 1:
        return per_seed[0]
    out: dict[str, Any] = {"contexts": per_seed[0]["contexts"], "seeds": len(per_seed),
                           "interval": "95% Student-t over seeds"}
    for who, greedy in VARIANTS:
        k = f"{who}_{'greedy' if greedy else 'sampled'}"
        per = [r[k] for r in per_seed]
        m, lo, hi = mean_ci95(per)
        out[k], out[f"{k}_seeds"], out[f"{k}_ci95"] = m, per, [lo, hi]
    out["per_seed"] = per_seed
    return out


# --- the evaluator's grid: every policy on every context -------------------------------------

def grid_returns(model: Model, policies: Policies, contexts: np.ndarray, key: jax.Array,
                 greedy: bool) -> dict[str, np.ndarray]:
    """One episode per context `[N, d]` for the central policy and each teacher.

    Returns central `[N]`, teachers `[P, N]` (teacher i in every context), cell `[N]` (the
    partition of each context) and own `[N]` (each context by its own cell's teacher). All
    policies use the same key, hence the same initial states.
    """
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

    return jax.tree.map(np.asarray, run(policies, jnp.asarray(contexts), key))
