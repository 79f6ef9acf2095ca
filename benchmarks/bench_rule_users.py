"""How the rule-based users' work grows with the length of the answer they read: linear, or not.

Every rule user of `hindsight_ref.simulators` (one per persona) and the toy world's user answers answers built
to make a backtracking regex slow: a run of newlines, tab-newline pairs, a sign-off phrase repeated without an
ending, spaces before a heading. Each is timed at n and 10 n characters; linear work takes about 10 times
longer, quadratic work about 100 times. The script prints each time and ratio, and exits with status 1 when a
ratio passes --bound (default 50: generous for linear, whose ratio can reach 20-45 when the longer answer
leaves the CPU caches, and half of quadratic).

    python benchmarks/bench_rule_users.py              # n = 6,400 and 64,000 characters
    python benchmarks/bench_rule_users.py --n 1600     # smaller, for a slow implementation

A script, not a test: the figures depend on the machine and on what else runs on it.
"""
import argparse, sys, time

from hindsight_ref.simulators import RULE_PERSONAS, rule_user
from hindsight_ref.toyworld.world import WORLD_PERSONAS, WorldUser

ANSWERS = {"newlines": lambda n: "\n" * n, "tab-newline": lambda n: "\t\n" * (n // 2),
           "sign-off, no ending": lambda n: "hope this helps " * (n // 16) + ".x", "spaces, heading": lambda n: " " * n + "# h"}


def seconds(user, y: str, repeats: int = 3) -> float:
    "Best of `repeats` wall times of one answer (the least disturbed by other work on the machine)."
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter(); user([{"role": "user", "content": "q"}], y); best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6400, help="the shorter answer's length in characters (the longer: 10 n)")
    ap.add_argument("--bound", type=float, default=50.0, help="largest acceptable time ratio for a 10x longer answer")
    a = ap.parse_args()
    users = {f"rule:{p}": rule_user(p) for p in RULE_PERSONAS} | {f"world:{p}": WorldUser(p) for p in WORLD_PERSONAS}
    worst = 0.0
    print(f"{'user':38s} {'answer':20s} {'n':>8s} {'s':>9s} {'10 n':>8s} {'s':>9s} {'ratio':>6s}")
    for name, user in users.items():
        for kind, make in ANSWERS.items():
            t1, t10 = seconds(user, make(a.n)), seconds(user, make(10 * a.n))
            ratio = t10 / max(t1, 1e-4)            # below 0.1 ms the ratio measures the clock, not the work
            worst = max(worst, ratio)
            print(f"{name:38s} {kind:20s} {a.n:8d} {t1:9.4f} {10 * a.n:8d} {t10:9.4f} {ratio:6.1f}", flush=True)
    print(f"largest ratio {worst:.1f} (linear about 10, quadratic about 100; bound {a.bound:g})")
    sys.exit(0 if worst <= a.bound else 1)


if __name__ == "__main__":
    main()
