"""distillax `ppo` vs brax's own PPO on the inverted double pendulum (MJX), side by side.

    .venv/bin/python benchmarks/brax_peer.py                  # 2 alternating reps, ~30 min
    .venv/bin/python benchmarks/brax_peer.py --reps 3 --budget 1024000

Writes benchmarks/brax_results.json and benchmarks/brax_results.md. Every run is its own
process (started here, alternating brax / distillax, cold: no persistent compilation cache),
so "end to end" is the whole process, imports and compilation included, as a user meets it.

Same settings on both sides: 256 envs; brax's unroll 5 x 8 minibatches of 256 (10,240 env
steps per training step) is distillax's 40 steps x 8 time-minibatches; 4 epochs; discount
0.97; lr 3e-4; entropy 1e-2; observation normalisation; episodes of 1000 steps; the same
budget (`--budget`, a multiple of 10,240 * 4). Each side keeps its own defaults otherwise,
and those differ: brax scales rewards x10 and does not clip the value, distillax scales
x0.01 and clips it (presets.py says why); brax's networks are 4x32 (policy) and 5x256
(value), distillax's 2x64 for both; brax clips the ratio at 0.3, distillax at 0.2.
Evaluation on both: the distribution's mode over 1000-step episodes, 128 episodes (brax: 128
eval envs; distillax: 128 held-out contexts, all the default physics), at 4 points of the
run plus brax's initial one; the reward reported is that of the last evaluation.

env-steps/s after compilation: brax's own `training/sps` (env steps of a training epoch per
second of it, evaluation excluded), the median over its epochs; distillax's
`Summary.steps_per_s` (training calls only, evaluation excluded). The ceiling: brax's env
as brax PPO steps it (`envs.training.wrap`: vmap, episode limit, auto-reset) under random
actions in [-1, 1], 256 envs, no policy; and distillax's adapter stepping it, with the
physics shared (`double-pendulum`) and per env (`double-pendulum-physics`, every env at the
default context: the same dynamics, so the difference is the cost of context -> System; and
at random contexts).

brax 0.14's training code calls `jax.device_put_replicated`, removed in jax 0.11; the brax
child process defines a one-line stand-in (below) before importing brax's trainer. distillax
does not use it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STEPS_PER_ITER = 256 * 40  # = brax's batch 256 x 8 minibatches x unroll 5


# --- child processes ---------------------------------------------------------------------


def child_brax(budget: int, seed: int) -> dict:
    import jax
    import jax.numpy as jnp

    if not hasattr(jax, "device_put_replicated"):  # removed in jax 0.11; brax 0.14 calls it
        jax.device_put_replicated = lambda x, devices: jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), x)  # noqa: E501
    from brax import envs
    from brax.training.agents.ppo import train as ppo

    points = []
    t0 = time.perf_counter()

    def progress(step, metrics):
        points.append(dict(step=int(step), t=time.perf_counter() - t0,
                           eval_reward=float(metrics["eval/episode_reward"]),
                           sps=float(metrics.get("training/sps", float("nan")))))

    env = envs.get_environment("inverted_double_pendulum", backend="mjx")
    ppo.train(environment=env, num_timesteps=budget, num_evals=5, reward_scaling=10,
              episode_length=1000, normalize_observations=True, action_repeat=1,
              unroll_length=5, num_minibatches=8, num_updates_per_batch=4,
              discounting=0.97, learning_rate=3e-4, entropy_cost=1e-2, num_envs=256,
              batch_size=256, num_eval_envs=128, deterministic_eval=True, seed=seed,
              progress_fn=progress)
    sps = [p["sps"] for p in points[1:] if p["sps"] == p["sps"]]
    return dict(points=points, eval_reward=points[-1]["eval_reward"],
                env_steps=points[-1]["step"], steps_per_s=statistics.median(sps) if sps else None,
                call_s=time.perf_counter() - t0)


def child_distillax(budget: int, seed: int) -> dict:
    from distillax.config import Config
    from distillax.presets import preset
    from distillax.run import train

    t0 = time.perf_counter()
    cfg = Config(**{**preset("double-pendulum"), "method": "ppo", "seed": seed,
                    "total_steps": budget, "eval_contexts": 128,
                    "eval_every": budget // STEPS_PER_ITER // 4})
    _, s = train(cfg, log=lambda _: None)
    points = [dict(step=r["env_steps"], eval_reward=r["central_return"])
              for r in s.history if "central_return" in r]
    return dict(points=points, eval_reward=s.final["central_greedy"],
                env_steps=s.history[-1]["env_steps"], steps_per_s=s.steps_per_s,
                compile_s=s.compile_s, train_s=s.train_s, call_s=time.perf_counter() - t0)


def child_raw(seed: int) -> dict:
    """Random-action stepping, 256 envs x 100 steps per call, best of 5 calls after one
    compile: brax as brax PPO wraps it, and distillax's adapter three ways."""
    import jax
    import jax.numpy as jnp
    from brax import envs
    from brax.envs.wrappers.training import wrap

    from distillax.envs import make_task

    n, T = 256, 100
    key = jax.random.PRNGKey(seed)
    actions = jax.random.uniform(key, (T, n, 1), minval=-1.0, maxval=1.0)
    out = {}

    def timed(name, run, init):
        run = jax.jit(run)
        t = time.perf_counter()
        jax.block_until_ready(run(init))
        compile_s = time.perf_counter() - t
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            jax.block_until_ready(run(init))
            best = min(best, time.perf_counter() - t)
        out[name] = dict(steps_per_s=n * T / best, compile_and_first_s=compile_s)

    benv = wrap(envs.get_environment("inverted_double_pendulum", backend="mjx"), 1000)
    s0 = jax.jit(benv.reset)(jax.random.split(key, n))

    def brax_run(s):
        return jax.lax.scan(lambda s, a: (benv.step(s, a), None), s, actions)[0].reward.sum()

    timed("brax wrapped env (vmap + episode limit + auto-reset)", brax_run, s0)
    for name, task_name, random_ctx in [
            ("distillax adapter, shared physics (double-pendulum)", "double-pendulum", False),
            ("distillax adapter, per-env physics at the default context",
             "double-pendulum-physics", False),
            ("distillax adapter, per-env physics at random contexts",
             "double-pendulum-physics", True)]:
        task = make_task(task_name)
        keys = jax.random.split(key, n)
        ctx = (task.space.sample(key, (n,)) if random_ctx else
               jnp.broadcast_to(jnp.asarray(task.default_context, jnp.float32),
                                (n, task.space.dim)))
        _, st = jax.jit(jax.vmap(task.reset))(keys, ctx)

        def run(st, task=task, ctx=ctx, keys=keys):
            def f(s, a):
                o = jax.vmap(task.step)(keys, s, a, ctx, ctx)
                return o.state, o.reward
            return jax.lax.scan(f, st, actions)[1].sum()

        timed(name, run, st)
    return out


# --- the parent: alternate, collect, write -----------------------------------------------


def run_child(kind: str, budget: int, seed: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, __file__, "--child", kind, "--budget", str(budget), "--seed",
           str(seed)]
    load = os.getloadavg()[0]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(process_s=wall, load_before=load, load_after=os.getloadavg()[0])
    print(f"  {kind} seed {seed}: {json.dumps({k: v for k, v in result.items() if k != 'points'})}",
          flush=True)
    return result


def versions() -> dict:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("jax", "jaxlib", "brax", "mujoco", "mujoco-mjx",
                                       "flax", "optax")}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def write(results: dict) -> None:
    with open(os.path.join(HERE, "brax_results.json"), "w") as f:
        json.dump(results, f, indent=2)
    b, d, raw = results["brax"], results["distillax"], results["raw"]
    mb = {k: median([r[k] for r in b]) for k in ("steps_per_s", "process_s", "eval_reward")}
    md_ = {k: median([r[k] for r in d]) for k in ("steps_per_s", "process_s", "eval_reward")}
    e2e = lambda rs: median([r["env_steps"] / r["process_s"] for r in rs])  # noqa: E731
    lines = [
        "# distillax vs brax PPO: inverted double pendulum (MJX), CPU",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {results['machine']}; load average {results['load']} (1-min, at the start "
        "of each run: " + ", ".join(f"{r['load_before']:.1f}" for r in b + d) + ")  ",
        f"Versions: {results['versions']}  ",
        f"Budget: {results['budget']:,} env steps per run, {len(b)} runs per side "
        "(alternating), medians below; every run a cold process.",
        "",
        "| | brax PPO | distillax ppo | ratio |",
        "|---|---|---|---|",
        f"| env-steps/s after compilation | {mb['steps_per_s']:,.0f} | "
        f"{md_['steps_per_s']:,.0f} | {md_['steps_per_s'] / mb['steps_per_s']:.2f}x |",
        f"| end to end (whole process), s | {mb['process_s']:.0f} | {md_['process_s']:.0f} | "
        f"{mb['process_s'] / md_['process_s']:.2f}x faster |",
        f"| end-to-end env-steps/s | {e2e(b):,.0f} | {e2e(d):,.0f} | {e2e(d) / e2e(b):.2f}x |",
        f"| eval reward at the budget (mode, 128 episodes) | {mb['eval_reward']:.0f} | "
        f"{md_['eval_reward']:.0f} | |",
        "",
        "Per run: " + "; ".join(
            f"brax {r['eval_reward']:.0f} in {r['process_s']:.0f} s" for r in b) + "; " +
        "; ".join(f"distillax {r['eval_reward']:.0f} in {r['process_s']:.0f} s (compile "
                  f"{r['compile_s']:.0f} s)" for r in d),
        "",
        "Raw stepping, 256 envs, random actions (best of 5 calls of 100 steps, one process):",
        "",
        "| stepping | env-steps/s | compile + first call, s |",
        "|---|---|---|",
    ]
    for name, v in raw.items():
        lines.append(f"| {name} | {v['steps_per_s']:,.0f} | {v['compile_and_first_s']:.1f} |")
    lines += ["", results["notes"], ""]
    with open(os.path.join(HERE, "brax_results.md"), "w") as f:
        f.write("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--budget", type=int, default=100 * STEPS_PER_ITER)
    p.add_argument("--child", choices=("brax", "distillax", "raw"))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.child:
        fn = {"brax": lambda: child_brax(a.budget, a.seed),
              "distillax": lambda: child_distillax(a.budget, a.seed),
              "raw": lambda: child_raw(a.seed)}[a.child]
        print(json.dumps(fn()))
        return
    if a.budget % (4 * STEPS_PER_ITER):
        p.error(f"--budget must be a multiple of 4 x {STEPS_PER_ITER} (4 evaluations, whole "
                "training steps on both sides)")
    results = dict(command="python benchmarks/brax_peer.py " + " ".join(sys.argv[1:]),
                   machine=f"{platform.processor() or platform.machine()}, "
                           f"{os.cpu_count()} cores, {platform.platform()}",
                   load=f"{os.getloadavg()[0]:.1f} at start", versions=versions(),
                   budget=a.budget, brax=[], distillax=[], raw=None, notes="")
    for rep in range(a.reps):
        order = ("brax", "distillax") if rep % 2 == 0 else ("distillax", "brax")
        for kind in order:
            results[kind].append(run_child(kind, a.budget, rep))
    results["raw"] = run_child("raw", a.budget, 0)
    results["raw"] = {k: v for k, v in results["raw"].items() if isinstance(v, dict)}
    results["notes"] = (
        "The machine is shared (two other engineers' jobs run alongside): compare the two "
        "sides within this file, not with other files. distillax's end-to-end time includes "
        "its final held-out report, which compiles four evaluation programs (central / "
        "teachers x greedy / sampled; the same policy for `ppo`), each an MJX step + reset "
        "program.")
    write(results)


if __name__ == "__main__":
    main()
