"""The stability grid of nbs/36_stability.ipynb: long online runs in the toy world over teacher x anchor x learning
rate x seed, each measured along the run by `StabilityProbe` and cached as one JSON file per run.

    python benchmarks/run_stability.py                      # every cell (the notebook's): 4 teachers x 2 anchors x 2 lrs x 3 seeds = 48 runs
    python benchmarks/run_stability.py --design reduced     # the paper's recipe and each knob changed alone: 7 cells x 3 seeds = 21 runs
    python benchmarks/run_stability.py & python benchmarks/run_stability.py     # two processes share the grid

Interrupted, it resumes: a finished run is read from its JSON in --results and not run again, and a run that another
live process has claimed is left to it. When every run of the design is finished, the compact summary the notebook's
figure reads is written to --summary.
"""
import argparse, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--design", default="full", choices=("full", "reduced"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--interactions", type=int, default=3000, help="online interactions per run (default: 4x the 750 of 35_toyworld)")
    ap.add_argument("--every", type=int, default=300, help="measure every this many interactions")
    ap.add_argument("--n-eval", type=int, default=128, help="held-out requests per measurement")
    ap.add_argument("--results", type=Path, default=ROOT / "runs" / "stability", help="one JSON per finished run")
    ap.add_argument("--summary", type=Path, default=ROOT / "nbs" / "data" / "stability_grid.json")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--summary-now", action="store_true", help="run nothing; summarise the runs of the design finished so far")
    a = ap.parse_args(argv)
    from hindsight_ref.toyworld.model import load_world
    from hindsight_ref.toyworld.stability import StabilityProbe, grid_design, run_grid, run_key, summarise
    cells = grid_design(a.design, seeds=tuple(a.seeds))
    probe = None if a.summary_now else StabilityProbe(*load_world(), n=a.n_eval)
    if not a.summary_now: run_grid(cells, a.results, a.interactions, a.every, probe=probe, progress=not a.no_progress)
    done = [c for c in cells if (a.results / f"{run_key(c)}.json").exists()]
    if len(done) < len(cells) and not a.summary_now:
        print(f"{len(done)} of {len(cells)} runs of the {a.design} design finished; the summary is written when all are "
              f"(or now, of those finished, with --summary-now).")
        return 0
    if not done: ap.error(f"no finished run of the {a.design} design in {a.results}")
    results = run_grid(done, a.results, a.interactions, a.every, probe=probe, progress=False)
    a.summary.parent.mkdir(parents=True, exist_ok=True)
    a.summary.write_text(json.dumps(summarise(results), separators=(",", ":")) + "\n")
    print(f"{len(results)} of {len(cells)} runs summarised in {a.summary.relative_to(ROOT) if a.summary.is_relative_to(ROOT) else a.summary} "
          f"({a.summary.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
