"""`make bench`: distillax's speed against its ceiling, a peer (rejax PPO) and itself in P.

    .venv/bin/python benchmarks/run.py                 # everything, ~20-25 min on 2 cores
    .venv/bin/python benchmarks/run.py --sections limit peer --reps 5

Writes benchmarks/results.json and benchmarks/results.md. Everything is measured side by
side in one process on one machine: each case is compiled ahead of time
(`step.lower(state).compile()`, reported separately as compile time), run once to warm up,
then timed over `--reps` calls of `--iters` scanned iterations each (`block_until_ready`);
env-steps/s is the median over the calls. Sections:

1. limit: vmapped gymnax stepping + the teachers' forward pass and action sampling (no
   learning): the ceiling of acting. Also env stepping alone (random actions).
2. peer: rejax 0.1.3 PPO vs distillax `ppo` on CartPole-v1, same hyperparameters and network
   (2x64 tanh), at 4 envs x 128 steps and 2048 envs x 32 steps, both 4 epochs x 4
   minibatches: env-steps/s, and the final return of a full short training of each
   (`--budget-small` / `--budget-large` env steps; 128 sampled-action episodes).
3. overhead: `central` and `dnc` with P=4 vs `ppo` at the same total env count.
4. scaling: P in {1, 2, 4, 8, 16} at constant total envs for `central` and `dnc`.
5. profile: rollout alone (jitted `rollout` + the bootstrap value) vs the whole iteration,
   so update time = iteration - rollout.
6. sweep: a 4-member vmapped sweep (`--sweep learning_rate=...`, `central` P=4) in one
   program vs the 4 member configs as separate runs, one after the other: env-steps/s over
   all 4 runs, and compile time (one program vs four).
7. memory: the cost of memory: `ppo` and `central` (P=4) with GRU teachers and/or a GRU
   central policy (`--memory-size`, default 128 units) against the same feed-forward
   config, at the same envs, steps and torso.

rejax is a bench-only dependency (`make bench` installs it into the venv); it unpacks
gymnax's old 5-value `step`, so its env is wrapped here (`FiveValueStep`), rejax unedited.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from distillax import parallel
from distillax.config import Config, validate
from distillax.evaluation import policy_returns, run_policies
from distillax.model import Model, build_model
from distillax.rollout import rollout
from distillax.trainer import init_run_state, init_state, make_runner

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from peer import EVAL_EPISODES, PEER_HP, FiveValueStep  # noqa: E402

# --- timing ----------------------------------------------------------------------------------


def _block(x: Any) -> Any:
    return jax.block_until_ready(x)


@dataclasses.dataclass
class Case:
    """A compiled step `fn(arg) -> (arg', aux)` ready to time, doing `steps` env steps a call.

    `fn` may donate its argument, so each call feeds the next.
    """

    fn: Callable
    arg: Any
    steps: int
    compile_s: float  # wall: trace + lower + XLA compile
    compile_cpu_s: float  # this process's CPU time for the same (other load does not count)
    times: list[float] = dataclasses.field(default_factory=list)

    def call(self) -> None:
        t = time.perf_counter()
        self.arg = _block(self.fn(self.arg))[0]
        self.times.append(time.perf_counter() - t)

    def result(self) -> dict[str, Any]:
        rates = [self.steps / t for t in self.times]
        return {"steps_per_s": statistics.median(rates), "steps_per_s_all": rates,
                "compile_s": self.compile_s, "compile_cpu_s": self.compile_cpu_s}


def prepare(step: Callable, arg: Any, steps: int, *extra: Any) -> Case:
    """AOT-compile `step` for `arg` (and the fixed `extra` args; timed) and run it once to
    warm up."""
    t0, c0 = time.perf_counter(), time.process_time()
    compiled = step.lower(arg, *extra).compile()
    fn = lambda a: compiled(a, *extra)  # noqa: E731
    case = Case(fn, arg, steps, time.perf_counter() - t0, time.process_time() - c0)
    case.arg = _block(fn(arg))[0]
    return case


def run_interleaved(cases: dict[str, Case], reps: int) -> dict[str, dict[str, Any]]:
    """`reps` rounds of one call of every case in turn: cases compared with each other see
    the same machine load (it drifts on a shared machine), so their ratios are fair."""
    for _ in range(reps):
        for case in cases.values():
            case.call()
    return {name: case.result() for name, case in cases.items()}


# --- distillax -------------------------------------------------------------------------------


def distillax_config(method: str, partitions: int, num_envs: int, num_steps: int,
                     total_steps: int, **kw: Any) -> Config:
    base = dict(task="cartpole", method=method, partitions=partitions, num_envs=num_envs,
                num_steps=num_steps, total_steps=total_steps, update_epochs=4,
                num_minibatches=4, log_every=1, eval_every=10**9)
    return validate(Config(**{**base, **kw}))


def distillax_runner(config: Config, iters: int, seed: int = 0):
    model = build_model(config)
    state = (init_run_state(model) if config.num_runs > 1
             else init_state(model, jax.random.PRNGKey(seed)))
    runner = make_runner(model, state, parallel.make_mesh(1), iters)
    return model, runner, runner.place(state)


def prepare_distillax(config: Config, iters: int) -> Case:
    """The compiled, sharded training step (`iters` iterations per call, of every run)."""
    _, runner, state = distillax_runner(config, iters)
    return prepare(runner.step, state, iters * config.steps_per_iteration * config.num_runs,
                   runner.count(iters))


def rollout_only(model: Model, iters: int) -> Callable:
    """`iters` rollouts (plus the bootstrap value) of the teachers, no update: the acting
    part of `trainer.iteration`, with the same inputs."""
    c = model.config

    def run(state):
        def one(s, _):
            t_stats, c_stats = s.teacher_stats, s.central_stats
            act = lambda p, o, ctx: model.teachers(p, o, ctx, t_stats, c_stats)  # noqa: E731
            value_fn = lambda p, o, ctx: model.teacher_values(p, o, ctx, t_stats)  # noqa: E731
            acting = model.acting_params(s.params.teacher, s.params.central)
            env, traj = rollout(acting, s.env, s.partition, act, value_fn, model.env,
                                c.num_steps, c.context_candidates)
            last = value_fn(acting, env.obs, env.context)
            return s.replace(env=env), jnp.sum(traj.reward) + jnp.sum(last)

        return jax.lax.scan(one, state, None, length=iters)

    return jax.jit(run, donate_argnums=0)


def prepare_rollout(config: Config, iters: int) -> Case:
    model = build_model(config)
    state = init_state(model, jax.random.PRNGKey(0))
    return prepare(rollout_only(model, iters), state, iters * config.steps_per_iteration)


def limit_fn(model: Model, num_steps: int, iters: int, policy: bool) -> Callable:
    """`iters x num_steps` steps of P x B vmapped envs, acting with the teachers' forward pass
    and sampling (`policy`) or uniformly at random; contexts stay fixed (no resampling)."""
    env = model.env

    def run(carry):
        params, stats, obs, state, context, key = carry

        def step(c, _):
            obs, state, key = c
            key, k_act, k_env = jax.random.split(key, 3)
            if policy:
                dist, value = model.teachers(params, obs, context, stats)
                action = dist.sample(k_act)
            else:
                action = jax.random.randint(k_act, obs.shape[:2], 0, env.action_dim)
            keys = jax.random.split(k_env, obs.shape[0] * obs.shape[1])
            keys = keys.reshape(obs.shape[:2] + keys.shape[1:])
            out = jax.vmap(jax.vmap(env.step))(keys, state, action, context, context)
            return (out.obs, out.state, key), None

        (obs, state, key), _ = jax.lax.scan(step, (obs, state, key), None,
                                            length=num_steps * iters)
        return (params, stats, obs, state, context, key), None

    return jax.jit(run, donate_argnums=0)


def prepare_limit(config: Config, iters: int, policy: bool) -> Case:
    model = build_model(config)
    s = init_state(model, jax.random.PRNGKey(0))
    carry = (s.params.teacher, s.teacher_stats, s.env.obs, s.env.state, s.env.context, s.key)
    return prepare(limit_fn(model, config.num_steps, iters, policy), carry,
                   iters * config.steps_per_iteration)


def train_distillax(config: Config, seed: int) -> dict[str, Any]:
    """A full training of `config.total_steps` in one compiled call, then the return of
    EVAL_EPISODES sampled-action episodes of its (only) teacher on CartPole-v1."""
    model, runner, state = distillax_runner(config, config.num_iterations, seed)
    n = runner.count(config.num_iterations)
    t0 = time.perf_counter()
    compiled = runner.step.lower(state, n).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, metrics = _block(compiled(state, n))
    train_s = time.perf_counter() - t0
    contexts = np.tile(np.asarray(model.env.default_context, np.float32), (EVAL_EPISODES, 1))
    policies = jax.tree.map(lambda x: x[0], run_policies(model, state))
    ret = policy_returns(model, policies, jnp.asarray(contexts), jax.random.PRNGKey(seed + 1),
                         greedy=False, teachers=True)
    steps = config.num_iterations * config.steps_per_iteration
    return {"final_return": float(np.mean(ret)), "train_s": train_s, "compile_s": compile_s,
            "env_steps": steps, "train_steps_per_s": steps / train_s}


# --- rejax -----------------------------------------------------------------------------------


def rejax_ppo(num_envs: int, num_steps: int, total_steps: int, hp: dict[str, Any]):
    import gymnax
    from rejax import PPO

    env, env_params = gymnax.make("CartPole-v1")
    return PPO.create(
        env=FiveValueStep(env), env_params=env_params, num_envs=num_envs, num_steps=num_steps,
        num_epochs=4, num_minibatches=4, total_timesteps=total_steps, eval_freq=total_steps,
        skip_initial_evaluation=True, learning_rate=hp["learning_rate"],
        max_grad_norm=hp["max_grad_norm"], gamma=hp["gamma"], gae_lambda=hp["gae_lambda"],
        clip_eps=hp["clip_eps"], vf_coef=hp["vf_coef"], ent_coef=hp["ent_coef"],
        agent_kwargs={"activation": "tanh", "hidden_layer_sizes": (64, 64)})


def prepare_rejax(num_envs: int, num_steps: int, iters: int, hp: dict[str, Any]) -> Case:
    algo = rejax_ppo(num_envs, num_steps, num_envs * num_steps * iters, hp)
    ts = algo.init_state(jax.random.PRNGKey(0))
    step = jax.jit(lambda ts: (jax.lax.fori_loop(0, iters,
                                                 lambda _, t: algo.train_iteration(t), ts),
                               None), donate_argnums=0)
    return prepare(step, ts, iters * num_envs * num_steps)


def train_rejax(num_envs: int, num_steps: int, total_steps: int, seed: int,
                hp: dict[str, Any]) -> dict[str, Any]:
    """rejax's own `train` (one evaluation, at the end: 128 sampled-action episodes)."""
    algo = rejax_ppo(num_envs, num_steps, total_steps, hp)
    key = jax.random.PRNGKey(seed)
    train = jax.jit(algo.train)
    t0 = time.perf_counter()
    compiled = train.lower(key).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts, (lengths, returns) = _block(compiled(key))
    train_s = time.perf_counter() - t0
    iteration = num_envs * num_steps
    steps = int(np.ceil(total_steps / iteration)) * iteration
    return {"final_return": float(np.mean(returns[-1])), "train_s": train_s,
            "compile_s": compile_s, "env_steps": steps, "train_steps_per_s": steps / train_s}


# --- sections --------------------------------------------------------------------------------

def section_limit(a) -> dict[str, Any]:
    config = distillax_config("ppo", 1, a.limit_envs, a.limit_steps,
                              a.limit_envs * a.limit_steps)
    cases = {"env_only": prepare_limit(config, a.iters, policy=False),
             "env_and_teacher_forward": prepare_limit(config, a.iters, policy=True)}
    return {"envs": a.limit_envs, "steps": a.limit_steps, **run_interleaved(cases, a.reps)}


# --- end to end: whole processes, as a user runs them -------------------------------------

E2E_CASES = ((4, 128, 2**19), (2048, 32, 2**22))  # (envs, steps, env-step budget)


def e2e_eval_every(envs: int, steps: int) -> int:
    """distillax's automatic evaluation cadence for EVAL_EPISODES episodes of CartPole-v1's
    500 steps, rounded up to a power of two so that the budget is a whole number of rejax's
    evaluation periods too (rejax trains ceil(budget / eval_freq) periods in full)."""
    from distillax.run import eval_interval

    auto = eval_interval(Config(method="ppo", partitions=1, num_envs=envs, num_steps=steps,
                                eval_contexts=EVAL_EPISODES), 500)
    return 2 ** math.ceil(math.log2(auto))


def _process(cmd: list[str], env: dict[str, str], results: str) -> dict[str, Any]:
    """Run `cmd` to its end; its wall time from the call to `results` written, and what it
    wrote there."""
    t = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=os.path.dirname(HERE))
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")
    with open(results) as f:
        return {"wall_s": wall, **json.load(f)}


def distillax_cmd(envs: int, steps: int, budget: int, out: str) -> list[str]:
    hp = [f"--{k.replace('_', '-')}={v}" for k, v in PEER_HP.items()]
    return [sys.executable, "-m", "distillax.train", "--task", "cartpole-v1", "--method", "ppo",
            f"--num-envs={envs}", f"--num-steps={steps}", f"--total-steps={budget}",
            "--update-epochs=4", "--num-minibatches=4", "--no-anneal-lr", *hp,
            f"--eval-contexts={EVAL_EPISODES}", f"--eval-every={e2e_eval_every(envs, steps)}",
            "--checkpoint-dir", out]


def section_e2e(a) -> dict[str, Any]:
    """Whole processes, alternating: rejax's `train` (benchmarks/rejax_train.py) and
    `python -m distillax.train` with a cold compilation cache (a fresh one, as on a new
    machine) and then warm (the same config again), each from its start to results.json
    written; plus the default `python -m distillax.train` (what `make train` runs), cold."""
    import tempfile

    rows = []
    root = tempfile.mkdtemp(prefix="distillax-e2e-")
    base_env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    for envs, steps, budget in E2E_CASES:
        every = e2e_eval_every(envs, steps)
        runs: dict[str, list[dict[str, Any]]] = {"rejax": [], "cold": [], "warm": []}
        for rep in range(a.reps):
            d = os.path.join(root, f"{envs}x{steps}-{rep}")
            env = {**base_env, "XDG_CACHE_HOME": os.path.join(d, "cache")}
            rx = os.path.join(d, "rejax", "results.json")
            runs["rejax"].append(_process(
                [sys.executable, os.path.join(HERE, "rejax_train.py"), f"--num-envs={envs}",
                 f"--num-steps={steps}", f"--total-steps={budget}",
                 f"--eval-freq={every * envs * steps}", "--out", rx], base_env, rx))
            for kind in ("cold", "warm"):  # the warm run finds the cold run's cache
                out = os.path.join(d, kind)
                runs[kind].append(_process(distillax_cmd(envs, steps, budget, out), env,
                                           os.path.join(out, "results.json")))
            log(f"e2e {envs}x{steps} rep {rep}: rejax {runs['rejax'][-1]['wall_s']:.1f} s, "
                f"distillax cold {runs['cold'][-1]['wall_s']:.1f} s, warm "
                f"{runs['warm'][-1]['wall_s']:.1f} s")
        med = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
        rows.append({
            "envs": envs, "steps": steps, "budget": budget, "eval_every": every,
            "eval_episodes": EVAL_EPISODES, "runs": runs,
            "rejax_wall_s": med["rejax"], "cold_wall_s": med["cold"], "warm_wall_s": med["warm"],
            "cold_ratio": med["rejax"] / med["cold"], "warm_ratio": med["rejax"] / med["warm"],
            "warm_compile_s": statistics.median(r["compile_s"] for r in runs["warm"]),
            "rejax_return": statistics.median(r["final_return"] for r in runs["rejax"]),
            "distillax_return": statistics.median(r["central_sampled"] for r in runs["cold"])})
    default, default_warm = [], []
    for rep in range(a.reps):
        d = os.path.join(root, f"default-{rep}")
        env = {**base_env, "XDG_CACHE_HOME": os.path.join(d, "cache")}
        for kind, runs_of in (("cold", default), ("warm", default_warm)):  # warm: same cache
            runs_of.append(_process([sys.executable, "-m", "distillax.train",
                                     "--checkpoint-dir", os.path.join(d, kind)], env,
                                    os.path.join(d, kind, "results.json")))
        log(f"e2e default run rep {rep}: {default[-1]['wall_s']:.1f} s cold, "
            f"{default_warm[-1]['wall_s']:.1f} s warm, central held-out "
            f"{default[-1]['central_greedy']:.1f} greedy")
    return {"cases": rows, "default": {
        "runs": default, "wall_s": statistics.median(r["wall_s"] for r in default),
        "central_greedy": statistics.median(r["central_greedy"] for r in default),
        "warm_runs": default_warm,
        "warm_wall_s": statistics.median(r["wall_s"] for r in default_warm)}}


def section_peer(a) -> list[dict[str, Any]]:
    rows = []
    for envs, steps, budget, iters in ((4, 128, a.budget_small, a.iters_small),
                                       (2048, 32, a.budget_large, a.iters)):
        config = distillax_config("ppo", 1, envs, steps, budget, task="cartpole-v1",
                                  anneal_lr=False, **PEER_HP)
        cases = {"rejax": prepare_rejax(envs, steps, iters, PEER_HP),
                 "distillax": prepare_distillax(config, iters)}
        row = {"envs": envs, "steps": steps, "iters_per_call": iters, "budget": budget,
               **run_interleaved(cases, a.reps)}
        row["ratio"] = row["distillax"]["steps_per_s"] / row["rejax"]["steps_per_s"]
        log(f"peer {envs}x{steps}: rejax {row['rejax']['steps_per_s']:,.0f}/s, "
            f"distillax {row['distillax']['steps_per_s']:,.0f}/s ({row['ratio']:.2f}x)")
        if budget:
            # Each trainer's own full training, as a user runs it, `reps` times in turn: the
            # step timing above cannot see what differs outside the timed step (rejax's own
            # `train()` runs faster than the `fori_loop(train_iteration)` timed above).
            runs = {"rejax": [], "distillax": []}
            for _ in range(a.reps):
                runs["rejax"].append(train_rejax(envs, steps, budget, 0, PEER_HP))
                runs["distillax"].append(train_distillax(config, 0))
            for who, rs in runs.items():
                row[who]["train"] = {**rs[0], "train_s": statistics.median(
                    x["train_s"] for x in rs), "train_s_all": [x["train_s"] for x in rs]}
            row["train_ratio"] = row["rejax"]["train"]["train_s"] / row["distillax"]["train"][
                "train_s"]
            log(f"  full training: rejax {row['rejax']['train']['train_s']:.2f} s, distillax "
                f"{row['distillax']['train']['train_s']:.2f} s ({row['train_ratio']:.2f}x); "
                f"final return: rejax {row['rejax']['train']['final_return']:.1f}, "
                f"distillax {row['distillax']['train']['final_return']:.1f}")
        rows.append(row)
    return rows


def _total_steps(a) -> int:
    return a.envs * a.steps * a.iters * (a.reps + 2)


# Where the distillation overhead goes: besides the targets' three, `independent` (the
# central policy distilled, no coupling) and `central` with the central policy trained in
# 1 of the 4 epochs (`distill_epochs=1`: the other epochs skip its passes).
OVERHEAD_CASES = {"ppo": ("ppo", 1, {}), "central": ("central", 4, {}), "dnc": ("dnc", 4, {}),
                  "independent": ("independent", 4, {}),
                  "central, distill_epochs=1": ("central", 4, {"distill_epochs": 1})}


def section_overhead(a) -> dict[str, Any]:
    cases = {name: prepare_distillax(distillax_config(m, P, a.envs, a.steps, _total_steps(a),
                                                      **kw), a.iters)
             for name, (m, P, kw) in OVERHEAD_CASES.items()}
    out = {"envs": a.envs, "steps": a.steps, **run_interleaved(cases, a.reps)}
    for m in ("central", "dnc"):
        out[f"{m}_vs_ppo"] = out[m]["steps_per_s"] / out["ppo"]["steps_per_s"]
    for m in OVERHEAD_CASES:
        log(f"overhead {m}: {out[m]['steps_per_s']:,.0f}/s (compile {out[m]['compile_s']:.1f} s)")
    return out


def section_scaling(a) -> dict[str, Any]:
    cases = {}
    for m in ("central", "dnc"):
        for P in a.partitions:
            cases[m, P] = prepare_distillax(
                distillax_config(m, P, a.envs, a.steps, _total_steps(a)), a.iters)
            log(f"scaling {m} P={P}: compiled in {cases[m, P].compile_s:.1f} s "
                f"({cases[m, P].compile_cpu_s:.1f} s CPU)")
    res = run_interleaved(cases, a.reps)
    out: dict[str, Any] = {"envs": a.envs, "steps": a.steps, "partitions": a.partitions}
    for m in ("central", "dnc"):
        rows = [res[m, P] for P in a.partitions]
        out[m] = rows
        for P, r in zip(a.partitions, rows):
            log(f"scaling {m} P={P}: {r['steps_per_s']:,.0f}/s")
        out[f"{m}_compile_ratio"] = rows[-1]["compile_s"] / rows[0]["compile_s"]
        out[f"{m}_compile_cpu_ratio"] = rows[-1]["compile_cpu_s"] / rows[0]["compile_cpu_s"]
        out[f"{m}_throughput_ratio"] = rows[-1]["steps_per_s"] / rows[0]["steps_per_s"]
    return out


def section_profile(a) -> list[dict[str, Any]]:
    specs = [("ppo", 1, a.envs, a.steps, "cartpole"), ("central", 4, a.envs, a.steps, "cartpole"),
             ("dnc", 4, a.envs, a.steps, "cartpole"), ("ppo", 1, 4, 128, "cartpole-v1"),
             ("ppo", 1, 2048, 32, "cartpole-v1")]
    cases, configs = {}, {}
    for spec in specs:
        method, P, envs, steps, task = spec
        iters = a.iters_small if envs < 16 else a.iters
        config = distillax_config(method, P, envs, steps, envs * steps * iters * (a.reps + 2),
                                  task=task)
        configs[spec] = config
        cases[spec + ("iteration",)] = prepare_distillax(config, iters)
        cases[spec + ("rollout",)] = prepare_rollout(config, iters)
    res = run_interleaved(cases, a.reps)
    rows = []
    for spec, config in configs.items():
        method, P, envs, steps, task = spec
        full, roll = res[spec + ("iteration",)], res[spec + ("rollout",)]
        per_it = lambda r, config=config: config.steps_per_iteration / r["steps_per_s"]  # noqa: E731
        row = {"method": method, "partitions": P, "envs": envs, "steps": steps, "task": task,
               "iteration_ms": 1e3 * per_it(full), "rollout_ms": 1e3 * per_it(roll),
               "iteration_steps_per_s": full["steps_per_s"],
               "rollout_steps_per_s": roll["steps_per_s"]}
        row["update_ms"] = row["iteration_ms"] - row["rollout_ms"]
        row["rollout_share"] = row["rollout_ms"] / row["iteration_ms"]
        log(f"profile {method} P={P} {envs}x{steps} ({task}): iteration "
            f"{row['iteration_ms']:.1f} ms, rollout {row['rollout_ms']:.1f} ms "
            f"({100 * row['rollout_share']:.0f}%)")
        rows.append(row)
    return rows


SWEEP_LR = (1e-4, 3e-4, 1e-3, 3e-3)


def section_sweep(a) -> dict[str, Any]:
    """One program training 4 sweep members vs 4 programs training one member each."""
    conf = lambda **kw: distillax_config("central", 4, a.envs, a.steps,  # noqa: E731
                                         _total_steps(a), **kw)
    cases = {"sweep": prepare_distillax(conf(sweep=(("learning_rate", SWEEP_LR),)), a.iters)}
    for lr in SWEEP_LR:
        cases[lr] = prepare_distillax(conf(learning_rate=lr), a.iters)
    res = run_interleaved(cases, a.reps)
    # the separate runs one after the other: their time per call adds up
    separate_s = sum(cases[lr].steps / res[lr]["steps_per_s"] for lr in SWEEP_LR)
    out = {"envs": a.envs, "steps": a.steps, "members": len(SWEEP_LR),
           "sweep_steps_per_s": res["sweep"]["steps_per_s"],
           "separate_steps_per_s": sum(cases[lr].steps for lr in SWEEP_LR) / separate_s,
           "sweep_compile_s": res["sweep"]["compile_s"],
           "separate_compile_s": sum(res[lr]["compile_s"] for lr in SWEEP_LR)}
    out["speedup"] = out["sweep_steps_per_s"] / out["separate_steps_per_s"]
    log(f"sweep of 4: {out['sweep_steps_per_s']:,.0f}/s vs 4 separate runs "
        f"{out['separate_steps_per_s']:,.0f}/s ({out['speedup']:.2f}x); compile "
        f"{out['sweep_compile_s']:.1f} s vs {out['separate_compile_s']:.1f} s")
    return out


# The cost of memory: name -> (method, P, teacher_memory, central_memory), each recurrent
# case beside the feed-forward one of its method (same envs, steps and torso)
MEMORY_CASES = {"ppo": ("ppo", 1, "none", "none"), "ppo, GRU": ("ppo", 1, "gru", "none"),
                "central": ("central", 4, "none", "none"),
                "central, GRU central": ("central", 4, "none", "gru"),
                "central, GRU teachers and central": ("central", 4, "gru", "gru")}


def section_memory(a) -> dict[str, Any]:
    cases = {}
    for name, (m, P, teacher, central) in MEMORY_CASES.items():
        config = distillax_config(m, P, a.envs, a.steps, _total_steps(a), teacher_memory=teacher,
                                  central_memory=central, memory_size=a.memory_size)
        cases[name] = prepare_distillax(config, a.iters)
        log(f"memory {name}: compiled in {cases[name].compile_s:.1f} s")
    out = {"envs": a.envs, "steps": a.steps, "memory_size": a.memory_size,
           **run_interleaved(cases, a.reps)}
    for name, (m, *_) in MEMORY_CASES.items():
        out[name]["vs_feed_forward"] = out[name]["steps_per_s"] / out[m]["steps_per_s"]
        log(f"memory {name}: {out[name]['steps_per_s']:,.0f}/s "
            f"({out[name]['vs_feed_forward']:.2f}x feed-forward)")
    return out


SECTIONS = {"e2e": section_e2e, "limit": section_limit, "peer": section_peer,
            "overhead": section_overhead,
            "scaling": section_scaling, "profile": section_profile, "sweep": section_sweep,
            "memory": section_memory}


# --- report ----------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, flush=True)


def _k(x: float) -> str:
    return f"{x / 1e3:,.0f}k"


def targets(r: dict[str, Any]) -> list[tuple[str, str, bool]]:
    out = []
    if "e2e" in r:
        for row in r["e2e"]["cases"]:
            case = f"{row['envs']}x{row['steps']}, {row['budget']:,} steps"
            out.append((f"end to end, cold cache: distillax >= 1.0x rejax ({case}; goal 1.25x)",
                        f"{row['cold_ratio']:.2f}x", row["cold_ratio"] >= 1.0))
            out.append((f"second run of the same config compiles in <= 2 s ({case})",
                        f"{row['warm_compile_s']:.1f} s", row["warm_compile_s"] <= 2.0))
        d = r["e2e"]["default"]
        out.append(("default run (make train) <= 25 s wall, central held-out >= 450 greedy",
                    f"{d['wall_s']:.1f} s, {d['central_greedy']:.1f}",
                    d["wall_s"] <= 25.0 and d["central_greedy"] >= 450))
    for row in r.get("peer", []):
        out.append((f"distillax >= 1.0x rejax at {row['envs']}x{row['steps']} (timed step)",
                    f"{row['ratio']:.2f}x", row["ratio"] >= 1.0))
        if "train_ratio" in row:
            out.append((f"distillax >= 1.0x rejax at {row['envs']}x{row['steps']} (each "
                        "one's full training, median)", f"{row['train_ratio']:.2f}x",
                        row["train_ratio"] >= 1.0))
    if "overhead" in r:
        v = r["overhead"]["central_vs_ppo"]
        out.append(("central (P=4) >= 0.8x ppo (training calls)", f"{v:.2f}x", v >= 0.8))
        v = r["overhead"]["dnc_vs_ppo"]
        out.append(("dnc (P=4) >= 0.6x ppo (training calls)", f"{v:.2f}x", v >= 0.6))
    if "scaling" in r:
        s = r["scaling"]
        lo, hi = s["partitions"][0], s["partitions"][-1]
        for m in ("central", "dnc"):
            v, w = s[f"{m}_compile_cpu_ratio"], s[f"{m}_compile_ratio"]
            out.append((f"{m}: compile time P={hi} / P={lo} < 1.5x (CPU time; wall in brackets)",
                        f"{v:.2f}x ({w:.2f}x)", v < 1.5))
        v = s["central_throughput_ratio"]
        out.append((f"central: throughput P={hi} >= 0.8x P={lo}", f"{v:.2f}x", v >= 0.8))
    return out


def _md_e2e(r: dict[str, Any]) -> list[str]:
    """The `e2e` section of results.md."""
    e = r["e2e"]
    lines = ["", "## End to end: whole processes, as a user runs them", "",
              "Wall time of each process from its start to its results.json written "
              "(start-up, compilation, training, periodic and final evaluation, checkpoints "
              "included), median of the alternated repetitions. rejax 0.1.3: its own "
              "`train` (benchmarks/rejax_train.py). distillax: `python -m distillax.train` "
              "(`distillax_cmd` in run.py), cold = a fresh compilation cache as on a new "
              "machine, warm = the same config run again. Both: CartPole-v1, PPO with "
              f"`peer.PEER_HP` (lr {PEER_HP['learning_rate']} constant), 2x64 tanh, "
              f"{EVAL_EPISODES} evaluation episodes every `eval every` iterations (distillax's "
              "automatic cadence rounded up to a power of two; distillax evaluates greedy "
              "actions during training and greedy and sampled at the end).", "",
              "| envs x steps | budget | eval every | rejax s | distillax cold s | "
              "distillax / rejax speed (cold) | distillax warm s | warm compile s | "
              "speed (warm) | return rejax / distillax (sampled) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in e["cases"]:
        lines.append(f"| {row['envs']}x{row['steps']} | {row['budget']:,} | "
                     f"{row['eval_every']} | {row['rejax_wall_s']:.1f} | "
                     f"{row['cold_wall_s']:.1f} | **{row['cold_ratio']:.2f}x** | "
                     f"{row['warm_wall_s']:.1f} | {row['warm_compile_s']:.1f} | "
                     f"{row['warm_ratio']:.2f}x | {row['rejax_return']:.1f} / "
                     f"{row['distillax_return']:.1f} |")
    d = e["default"]
    lines += ["", f"Default run (`python -m distillax.train --checkpoint-dir D`, what "
              f"`make train` runs, cold cache): {d['wall_s']:.1f} s wall (median), central "
              f"held-out return {d['central_greedy']:.1f} greedy; per run: " + ", ".join(
                  f"{x['wall_s']:.1f} s (start-up {x['startup_s']:.1f}, compile "
                  f"{x['compile_s']:.1f}, training {x['train_s']:.1f}, evaluation "
                  f"{x['eval_s']:.1f})" for x in d["runs"])]
    if "warm_wall_s" in d:
        lines[-1] += (f". The same runs again (warm cache): {d['warm_wall_s']:.1f} s wall "
                      "(median); per run: " + ", ".join(
                          f"{x['wall_s']:.1f} s (compile {x['compile_s']:.1f}, training "
                          f"{x['train_s']:.1f})" for x in d["warm_runs"]))
    return lines


def _md_limit(r: dict[str, Any]) -> list[str]:
    """The `limit` section of results.md."""
    L = r["limit"]
    lines = ["", f"## 1. Limit (CartPole, {L['envs']} envs x {L['steps']} steps, no "
              "learning)", "", "| what | env-steps/s | compile s |", "|---|---|---|",
              f"| env stepping alone (random actions) | {_k(L['env_only']['steps_per_s'])} "
              f"| {L['env_only']['compile_s']:.1f} |",
              f"| env stepping + teacher forward + sampling | "
              f"{_k(L['env_and_teacher_forward']['steps_per_s'])} | "
              f"{L['env_and_teacher_forward']['compile_s']:.1f} |"]
    return lines


def _md_peer(r: dict[str, Any]) -> list[str]:
    """The `peer` section of results.md."""
    lines = ["", "## 2. Peer: rejax 0.1.3 PPO vs distillax `ppo` on CartPole-v1", "",
              "Same hyperparameters (4 epochs x 4 minibatches, lr "
              f"{PEER_HP['learning_rate']} constant, clip 0.2, gamma 0.99, GAE 0.95, vf 0.5, "
              "ent 0.01, max_grad_norm 0.5) and network (separate actor and critic, 2x64 "
              "tanh). Timed step: the compiled training step alone. Full training: "
              "each trainer's own one-call training of the budget, compile excluded, "
              f"median of {r['args']['reps']} (rejax's `train()`, distillax's scanned "
              "runner). Final return: mean of 128 sampled-action episodes after the "
              "full training, seed 0.", "",
              "| envs x steps | trainer | timed step env-steps/s | compile s | distillax / "
              "rejax (step) | budget | full training s | distillax / rejax (full) | "
              "final return |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r["peer"]:
        for who in ("rejax", "distillax"):
            x = row[who]
            t = x.get("train", {})
            lines.append(
                f"| {row['envs']}x{row['steps']} | {who} | {_k(x['steps_per_s'])} | "
                f"{x['compile_s']:.1f} | {row['ratio']:.2f}x | "
                f"{t.get('env_steps', 0):,} | {t.get('train_s', float('nan')):.2f} | "
                f"{row.get('train_ratio', float('nan')):.2f}x | "
                f"{t.get('final_return', float('nan')):.1f} |")
    return lines


def _md_overhead(r: dict[str, Any]) -> list[str]:
    """The `overhead` section of results.md."""
    o = r["overhead"]
    lines = ["", f"## 3. Distillation overhead (cartpole, {o['envs']} envs x {o['steps']} "
              "steps in total)", "", "| method | P | env-steps/s | vs ppo | compile s |",
              "|---|---|---|---|---|"]
    for name, (_, P, _) in OVERHEAD_CASES.items():
        if name not in o:
            continue
        ratio = o[name]["steps_per_s"] / o["ppo"]["steps_per_s"]
        lines.append(f"| {name} | {P} | {_k(o[name]['steps_per_s'])} | {ratio:.2f}x | "
                     f"{o[name]['compile_s']:.1f} |")
    return lines


def _md_scaling(r: dict[str, Any]) -> list[str]:
    """The `scaling` section of results.md."""
    s = r["scaling"]
    lines = ["", f"## 4. Scaling in P (cartpole, {s['envs']} envs x {s['steps']} steps in "
              "total; all cases compiled first, then timed in interleaved rounds)", "",
              "| method | P | env-steps/s | vs P=1 | compile s (wall) | compile s (CPU) | "
              "CPU vs P=1 |", "|---|---|---|---|---|---|---|"]
    for meth in ("central", "dnc"):
        rows = s[meth]
        for P, x in zip(s["partitions"], rows):
            lines.append(f"| {meth} | {P} | {_k(x['steps_per_s'])} | "
                         f"{x['steps_per_s'] / rows[0]['steps_per_s']:.2f}x | "
                         f"{x['compile_s']:.1f} | {x['compile_cpu_s']:.1f} | "
                         f"{x['compile_cpu_s'] / rows[0]['compile_cpu_s']:.2f}x |")
    return lines


def _md_profile(r: dict[str, Any]) -> list[str]:
    """The `profile` section of results.md."""
    lines = ["", "## 5. Where the time goes (rollout vs update)", "",
              "Rollout = a jitted function running only `rollout` (+ the bootstrap value) "
              "on the same state; update = whole iteration - rollout.", "",
              "| method | P | task | envs x steps | iteration ms | rollout ms | update ms | "
              "rollout share | rollout-only env-steps/s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for p in r["profile"]:
        lines.append(f"| {p['method']} | {p['partitions']} | {p['task']} | "
                     f"{p['envs']}x{p['steps']} | {p['iteration_ms']:.1f} | "
                     f"{p['rollout_ms']:.1f} | {p['update_ms']:.1f} | "
                     f"{100 * p['rollout_share']:.0f}% | {_k(p['rollout_steps_per_s'])} |")
    return lines


def _md_sweep(r: dict[str, Any]) -> list[str]:
    """The `sweep` section of results.md."""
    w = r["sweep"]
    lines = ["", f"## 6. A 4-member sweep vs 4 separate runs (central, P=4, cartpole, "
              f"{w['envs']} envs x {w['steps']} steps per run; learning_rate in "
              f"{', '.join(map(str, SWEEP_LR))})", "",
              "| case | env-steps/s (all runs) | compile s |", "|---|---|---|",
              f"| one vmapped program (`--sweep`) | {_k(w['sweep_steps_per_s'])} | "
              f"{w['sweep_compile_s']:.1f} |",
              f"| 4 runs, one after the other | {_k(w['separate_steps_per_s'])} | "
              f"{w['separate_compile_s']:.1f} |", "",
              f"The sweep trains {w['speedup']:.2f}x the env steps per second."]
    return lines


def _md_memory(r: dict[str, Any]) -> list[str]:
    """The `memory` section of results.md."""
    o = r["memory"]
    lines = ["", f"## 7. The cost of memory (cartpole, {o['envs']} envs x {o['steps']} steps "
              f"in total, 2x64 torso, GRU of {o['memory_size']} units)", "",
              "| case | P | env-steps/s | vs feed-forward | compile s |", "|---|---|---|---|---|"]
    for name, (_, P, _, _) in MEMORY_CASES.items():
        x = o[name]
        lines.append(f"| {name} | {P} | {_k(x['steps_per_s'])} | {x['vs_feed_forward']:.2f}x | "
                     f"{x['compile_s']:.1f} |")
    return lines


# results.md's sections in order (`SECTIONS` above are the measurements)
MARKDOWN = (("e2e", _md_e2e), ("limit", _md_limit), ("peer", _md_peer),
            ("overhead", _md_overhead), ("scaling", _md_scaling), ("profile", _md_profile),
            ("sweep", _md_sweep), ("memory", _md_memory))


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = ["# distillax benchmarks", "",
             f"Command: `{r['command']}`  ", f"Date (UTC): {r['date_utc']}  ",
             f"Machine: {m['cpu']}; jax {m['jax']} ({m['backend']}); load average "
             f"(1/5/15 min) {m['loadavg_start']} at start, {m['loadavg_end']} at end  ",
             f"Timing: compile (trace + lower + XLA compile, `step.lower(state).compile()`) "
             "reported separately, as wall time and as this process's CPU time (which other "
             "processes' load does not inflate); one warm-up call; env-steps/s is the median "
             f"of {r['args']['reps']} timed calls of {r['args']['iters']} scanned iterations "
             f"each (peer at 4 envs: {r['args']['iters_small']}), `block_until_ready`. Cases "
             "compared with each other are compiled first and then timed in interleaved "
             "rounds (one call of each in turn), so they see the same load. The machine is "
             "shared: absolute numbers are noisy, ratios within this run are what count.", ""]
    lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {n} | {v} | {'yes' if ok else '**no**'} |" for n, v, ok in targets(r)]
    for name, section in MARKDOWN:
        if name in r:
            lines += section(r)
    lines += ["", "What these figures mean and how they were reached: [findings.md](findings.md) "
              "(hand-written, not regenerated)."]
    if r.get("notes"):
        lines += ["", "## Notes", "", r["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--reps", type=int, default=3, help="timed calls per case (median kept)")
    p.add_argument("--iters", type=int, default=2, help="iterations per timed call")
    p.add_argument("--iters-small", type=int, default=64,
                   help="iterations per timed call at the peer's 4 envs x 128 steps")
    p.add_argument("--envs", type=int, default=256, help="total envs, sections 3-5")
    p.add_argument("--steps", type=int, default=128, help="rollout length, sections 3-5")
    p.add_argument("--partitions", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--memory-size", type=int, default=128, help="GRU units, section 7")
    p.add_argument("--limit-envs", type=int, default=4096)
    p.add_argument("--limit-steps", type=int, default=128)
    p.add_argument("--budget-small", type=int, default=2**19,
                   help="env steps of the peer's full training at 4 x 128 (0: skip)")
    p.add_argument("--budget-large", type=int, default=2**21,
                   help="env steps of the peer's full training at 2048 x 32 (0: skip)")
    p.add_argument("--notes", default="", help="free text for results.md")
    p.add_argument("--out", default=HERE)
    a = p.parse_args()
    budgets = {"budget_small": a.budget_small, "budget_large": a.budget_large}
    r: dict[str, Any] = {
        "command": " ".join(["benchmarks/run.py"] + sys.argv[1:]),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": {"cpu": f"{platform.machine()}, {os.cpu_count()} CPU cores "
                           f"({platform.node()})", "jax": jax.__version__,
                    "backend": jax.default_backend(),
                    "loadavg_start": [round(x, 2) for x in os.getloadavg()]},
        "args": {**vars(a), **budgets}, "notes": a.notes,
    }
    try:
        r["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True, cwd=HERE).stdout.strip()
    except OSError:
        pass
    t0 = time.perf_counter()
    for name in a.sections:
        t = time.perf_counter()
        r[name] = SECTIONS[name](a)
        log(f"[{name}: {time.perf_counter() - t:.0f} s]")
    r["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    r["total_s"] = time.perf_counter() - t0
    for n, v, ok in targets(r):
        log(f"{'MET ' if ok else 'MISS'} {n}: {v}")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(r, f, indent=2)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(markdown(r))
    log(f"wrote {a.out}/results.json and results.md ({r['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
