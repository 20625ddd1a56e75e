"""Every method on the default cartpole experiment (sign-flipping gain, 4 k-means cells,
3M env steps, seed 0): held-out returns of the central policy and of the teachers.

    .venv/bin/python experiments/methods_cartpole.py [--total-steps N] [--seed S]

Writes experiments/results/methods_cartpole.{json,md}.
"""

import argparse
import json
import os

from distillax import Config, train
from distillax.config import METHODS

RUNS = [(m, {}) for m in METHODS if m != "ppo"] + [
    ("ppo", {}), ("ppo", {"teacher_sees_context": True})]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--total-steps", type=int, default=Config().total_steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    a = p.parse_args()
    rows = []
    for method, extra in RUNS:
        config = Config(method=method, total_steps=a.total_steps, seed=a.seed,
                        eval_every=10_000, **extra)
        _, s = train(config, log=lambda line: None)
        name = method + (" (context)" if extra.get("teacher_sees_context") else "")
        row = {"method": name, **{k: s.final[k] for k in ("central_greedy", "central_sampled",
                                                           "teachers_greedy", "teachers_sampled")},
               "steps_per_s": s.steps_per_s, "compile_s": s.compile_s}
        print(json.dumps(row), flush=True)
        rows.append(row)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "methods_cartpole.json"), "w") as f:
        json.dump({"total_steps": a.total_steps, "seed": a.seed, "rows": rows}, f, indent=2)
    lines = [f"Default cartpole experiment, {a.total_steps:,} env steps, seed {a.seed}, "
             "64 held-out contexts. For `ppo` the single policy is both columns.", "",
             "| method | central greedy | central sampled | teachers greedy | teachers sampled "
             "| env-steps/s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['central_greedy']:.1f} | {r['central_sampled']:.1f}"
                     f" | {r['teachers_greedy']:.1f} | {r['teachers_sampled']:.1f} | "
                     f"{r['steps_per_s']:,.0f} |")
    with open(os.path.join(a.out, "methods_cartpole.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
