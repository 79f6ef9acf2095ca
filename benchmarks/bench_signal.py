"""Scoring throughput of the hindsight signal on SmolLM2-135M-Instruct, on the CPU.

Scores the fixture set (teacher pass + student pass per interaction, one template) two ways and prints
tokens per second, medians over repeats, side by side with their ratio:

- chunked: `hindsight_ref.signal.score_batch`: decoder hidden states sliced to the completion span, LM head and
  float32 log-softmax applied per chunk of rows (checkpointed per chunk when gradients are on);
- naive:   `naive_completion_logprobs`: the model's full logits [B, L, V], float32 log_softmax, gather.

Two regimes: scoring (no gradients; what `hindsight_signal` does) and a training-style student pass
(forward + backward through the student log-probs, teacher under inference mode), with `--grad`.

    python benchmarks/bench_signal.py                 # whole fixture set, 3 repeats
    python benchmarks/bench_signal.py --n 32 --grad   # a subset, with the forward+backward regime too

A script, not a test: the figures depend on the machine and on what else runs on it.
"""
import argparse, os, statistics, time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch

from hindsight_ref.contexts import collate, encode_interactions
from hindsight_ref.data import fixture_interactions
from hindsight_ref.models import load_model
from hindsight_ref.models import eval_mode
from hindsight_ref.signal import naive_completion_logprobs, score_batch


def batches(tok, its, template, batch_size):
    encs = encode_interactions(tok, its, template=template)
    encs.sort(key=lambda e: -(len(e.student_ids) + len(e.teacher_ids)))      # as hindsight_signal does: less padding
    return [collate(encs[s:s + batch_size], pad_token_id=tok.pad_token_id) for s in range(0, len(encs), batch_size)]


def naive_score(model, b):
    "Both passes with full logits; same outputs as score_batch."
    with eval_mode(model):
        with torch.inference_mode():
            lt = naive_completion_logprobs(model, b["teacher_input_ids"], b["teacher_attention_mask"], b["completion_ids"],
                                           b["teacher_context_len"], b["teacher_position_ids"]).clone()
        ls = naive_completion_logprobs(model, b["student_input_ids"], b["student_attention_mask"], b["completion_ids"],
                                       b["student_context_len"], b["student_position_ids"])
    m = b["completion_mask"]
    return {"logp_student": ls * m, "logp_teacher": lt * m, "advantage": (lt - ls.detach()) * m}


def run(fn, model, bs, grad):
    t0 = time.perf_counter()
    for b in bs:
        with torch.set_grad_enabled(grad):
            out = fn(model, b)
            if grad:
                (-(out["advantage"] * out["logp_student"]).sum()).backward()    # the paper's sampled-token surrogate
    if grad: model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--template", default="paper")
    ap.add_argument("--n", type=int, default=0, help="number of fixture interactions (0 = all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grad", action="store_true", help="also time the training-style forward+backward regime")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)

    model, tok = load_model(a.model, device="cpu")
    its = fixture_interactions()
    if a.n: its = its[:a.n]
    bs = batches(tok, its, a.template, a.batch_size)
    n_comp = sum(int(b["completion_mask"].sum()) for b in bs)
    n_all = sum(int(b["student_attention_mask"].sum() + b["teacher_attention_mask"].sum()) for b in bs)
    n_cols = sum(b["student_input_ids"].numel() + b["teacher_input_ids"].numel() for b in bs)
    V = model.config.vocab_size
    big = max(b["student_input_ids"].numel() for b in bs)
    big_t = max(b["completion_ids"].numel() for b in bs)
    print(f"{a.model} on the CPU ({torch.get_num_threads()} threads), torch {torch.__version__}; template {a.template!r}")
    print(f"{len(its)} fixture interactions in {len(bs)} batches of <= {a.batch_size}: {n_comp:,} completion tokens, "
          f"{n_all:,} tokens in both passes ({n_cols:,} with padding); {a.repeats} repeats, medians\n")
    print(f"largest logits tensor: naive [B, L, V] = {big:,} x {V:,} x 4 B = {big * V * 4 / 2**20:,.0f} MiB "
          f"(+ its fp32 log-softmax over the completion, {big_t * V * 4 / 2**20:,.0f} MiB); "
          f"chunked [chunk, V] = {a.chunk_size} x {V:,} x 4 B = {a.chunk_size * V * 4 / 2**20:,.0f} MiB\n")

    with torch.inference_mode():                                    # the two paths agree
        d = max((score_batch(model, b, a.chunk_size)["advantage"] - naive_score(model, b)["advantage"]).abs().max().item()
                for b in bs[-1:])
    print(f"check: max |A chunked - A naive| on one batch = {d:.1e}\n")

    regimes = [("scoring (no grad)", False)] + ([("student fwd+bwd", True)] if a.grad else [])
    paths = [("chunked", lambda m, b: score_batch(m, b, a.chunk_size)), ("naive", naive_score)]
    print(f"{'regime':<20} {'path':<8} {'median s':>9} {'tok/s (all)':>12} {'tok/s (completion)':>19} {'runs (s)':>24}")
    for rname, grad in regimes:
        for _, fn in paths: run(fn, model, bs[-1:], grad)             # warm-up on the smallest batch
        ts = {p: [] for p, _ in paths}
        for r in range(a.repeats):                                     # interleaved, alternating order: both paths
            for pname, fn in (paths if r % 2 == 0 else paths[::-1]):   # see the same background load
                ts[pname].append(run(fn, model, bs, grad))
        med = {p: statistics.median(v) for p, v in ts.items()}
        for pname in ts:
            print(f"{rname:<20} {pname:<8} {med[pname]:>9.2f} {n_all / med[pname]:>12,.0f} {n_comp / med[pname]:>19,.0f} "
                  f"{', '.join(f'{t:.1f}' for t in ts[pname]):>24}")
        ratios = [n / c for n, c in zip(ts["naive"], ts["chunked"])]
        print(f"{rname:<20} {'ratio':<8} chunked throughput / naive throughput: median {statistics.median(ratios):.2f} "
              f"(per repeat: {', '.join(f'{x:.2f}' for x in ratios)})\n")

if __name__ == "__main__":
    main()
