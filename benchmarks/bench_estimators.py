"""Bias, variance, time and peak memory of every gradient estimator, against the exact gradient of the objective it claims.

    python benchmarks/bench_estimators.py                                  # toy world, SmolLM2-135M, random toy Qwen3 (CPU)
    python benchmarks/bench_estimators.py --models toyworld --draws 16 --repeats 3
    python benchmarks/bench_estimators.py --device cuda --completion 128

Per model, one batch of interactions whose follow-up criticises the answer (the toy world's own for its model, the
fixture set's for the chat models), completions cut to their first --completion tokens. Gradients are taken with
respect to the LM head (untied from the embeddings), the final norm and the last decoder layer; the exact gradient is
that of the full-vocabulary divergence, per position, conditional on the logged prefix (nbs/21_estimators.ipynb).
Columns: cosine and relative norm ||E[g] - g*|| / ||g*|| to the exact gradient of the estimator's own objective;
variance E||g - E[g]||^2 / ||g*||^2 of one estimate over --draws seeded draws of the sampled tokens (0: deterministic);
cosine to the reverse-KL gradient (the paper's objective); ms: median over --repeats (after a warm-up) of one gradient
from the decoder's last hidden states to .backward(); peak MB: CUDA's peak allocation on a GPU, the torch profiler's
allocation timeline on a CPU; teacher #: numbers per position a teacher must provide. A random toy Qwen3 has nearly
uniform next-token distributions, so its top-k rows say nothing about a trained model; it is here for the cost at
V = 151,936.
"""
import argparse
import os
import time

import torch


def load(name: str, device: str):
    "(model, tokenizer, interactions) for one model of the benchmark."
    from hindsight_ref.probe import load_probe_model, world_source, fixture_source, fixture_criticised
    from hindsight_ref.models import random_model
    if name == "toyworld":
        model, tok = load_probe_model("toyworld", device=device)
        src = world_source(16, model=model, tok=tok)
        return model, tok, [it for it, c in zip(src.interactions, src.criticised) if c][:8]
    its = [it for it in fixture_source().interactions if fixture_criticised(it)][:4]
    if name == "smollm2": model, tok = load_probe_model("smollm2-135m-instruct", device=device)
    elif name == "qwen3-toy": model, tok = random_model("qwen3-0.6b", toy=True, device=device)
    else: raise SystemExit(f"unknown model {name!r}; choose from toyworld, smollm2, qwen3-toy")
    return model.to(device), tok, its


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="toyworld,smollm2,qwen3-toy", help="comma-separated: toyworld, smollm2, qwen3-toy")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--completion", type=int, default=32, help="completion tokens kept per interaction (toy world: twice this)")
    ap.add_argument("--draws", type=int, default=32, help="draws of the sampled tokens for the variance")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per estimator (median reported)")
    ap.add_argument("--ks", default="1,4,20,100", help="top-k sizes for the reverse KL (forward KL and JSD use 20)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from hindsight_ref.estimators import default_estimators, estimator_study, estimator_table, mc_slope
    ests = default_estimators(ks=tuple(int(k) for k in args.ks.split(",")))
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {len(ests)} estimators, variance over {args.draws} draws, "
          f"time: median of {args.repeats}")
    for name in args.models.split(","):
        t0 = time.time()
        model, tok, its = load(name, args.device)
        res = estimator_study(model, tok, its, ests, max_completion_tokens=2 * args.completion if name == "toyworld" else args.completion,
                              n_draws=args.draws, mc_ns=(1, 4, 16, 64, 256, 1024), repeats=args.repeats, memory=not args.no_memory,
                              progress=False)
        print(f"\n== {name}: {res['n_sequences']} sequences, {res['n_positions']} positions, V = {res['vocab']:,}, "
              f"{res['n_params']:,} parameters differentiated ({time.time() - t0:.0f} s)")
        print(estimator_table(res))
        slopes = {e: mc_slope(res["mc"], e) for e in dict.fromkeys(r["estimator"] for r in res["mc"])}
        print("Monte Carlo mean of N draws vs the expectation, log-log slope (-0.5 expected): "
              + ", ".join(f"{e}: {s:+.2f}" for e, s in slopes.items()))


if __name__ == "__main__":
    main()
