"""Benchmark (not a test): training env-steps/s on 1, 2 and 4 simulated CPU devices.

    .venv/bin/python benchmarks/scaling.py                 # writes benchmarks/scaling.json
    .venv/bin/python benchmarks/scaling.py --devices 1 2 4 8 --total-steps 655360
    .venv/bin/python benchmarks/scaling.py --platform gpu --devices 1 --out gpu.json

Each device count runs in its own process (the device count is fixed once JAX starts;
`--xla_force_host_platform_device_count`), trains the same config from the same key and
reports env-steps/s over the training calls only (compilation and held-out evaluation
excluded; `Summary.steps_per_s`). Simulated devices share the machine's cores, so on a small
CPU they measure the overhead of sharding, not a speed-up; on N real GPUs the same program
splits the envs N ways.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(args: argparse.Namespace) -> None:
    import jax

    from distillax import Config, train

    config = Config(num_envs=args.num_envs, num_steps=args.num_steps,
                    total_steps=args.total_steps, log_every=args.log_every,
                    eval_every=10**9, eval_contexts=8, seeds=args.seeds,
                    num_devices=args.worker)
    best = 0.0
    for _ in range(args.repeats):
        _, summary = train(config, log=lambda _: None)
        best = max(best, summary.steps_per_s)
    print(json.dumps({"devices": len(jax.devices()), "backend": jax.default_backend(),
                      "steps_per_s": best, "compile_s": summary.compile_s,
                      "train_s": summary.train_s, "iterations": config.num_iterations,
                      "steps_per_iteration": config.steps_per_iteration}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--total-steps", type=int, default=256 * 128 * 10)
    p.add_argument("--log-every", type=int, default=5)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="runs per device count; best kept")
    p.add_argument("--platform", choices=("cpu", "gpu"), default="cpu",
                   help="cpu: simulated devices; gpu: the first N real accelerators")
    p.add_argument("--out", default=os.path.join(HERE, "scaling.json"))
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        return worker(args)
    results = []
    for n in args.devices:
        env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
        if args.platform == "cpu":
            env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
                       JAX_PLATFORMS="cpu")
        cmd = [sys.executable, __file__, "--worker", str(n)] + sys.argv[1:]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{n} device(s): {r['steps_per_s']:,.0f} env-steps/s "
              f"(compile {r['compile_s']:.1f} s)", flush=True)
    report = {"command": " ".join([".venv/bin/python", "benchmarks/scaling.py"] + sys.argv[1:]),
              "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores ({platform.node()})",
              "config": {"num_envs": args.num_envs, "num_steps": args.num_steps,
                         "total_steps": args.total_steps, "seeds": args.seeds,
                         "rest": "Config defaults (cartpole, central, 4 partitions, 64x64)"},
              "note": "simulated CPU devices share the same cores; best of --repeats runs",
              "results": results}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
