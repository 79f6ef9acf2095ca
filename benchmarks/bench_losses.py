"""Memory and time of the naive and the chunked loss paths, side by side.

    python benchmarks/bench_losses.py                 # CPU, defaults below
    python benchmarks/bench_losses.py --device cuda --batch 8 --completion 1024 --vocab 151936

For each loss (the paper's sampled-token loss, and the full-vocabulary reverse KL of Eq. 2) one
forward + backward step is timed in the naive form (full float32 [B, T, V] logits and log-softmax)
and in the chunked form (decoder hidden states, LM head + log-softmax per chunk of rows, recomputed
in the backward). Each measurement runs in a fresh subprocess; peak memory is the peak CUDA
allocation on a GPU, and the growth of the process's peak resident set on the CPU. The value and
the gradient of the two forms are compared as well.
"""
import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def build(args):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=2 * args.hidden,
                      num_hidden_layers=args.layers, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).to(args.device).eval()
    B, Ls, Lt, T = args.batch, args.context, args.context + 32, args.completion
    g = torch.Generator().manual_seed(1)
    s_ids = torch.randint(3, args.vocab, (B, Ls + T), generator=g)
    t_ids = torch.randint(3, args.vocab, (B, Lt + T), generator=g)
    t_ids[:, Lt:] = s_ids[:, Ls:]
    lens = torch.linspace(T // 2, T, B).long()
    cmask = torch.arange(T)[None] < lens[:, None]
    s_am = torch.ones(B, Ls + T, dtype=torch.long); t_am = torch.ones(B, Lt + T, dtype=torch.long)
    s_am[:, Ls:] = cmask; t_am[:, Lt:] = cmask
    d = args.device
    batch = dict(S=(s_ids.to(d), s_am.to(d)), Tt=(t_ids.to(d), t_am.to(d)), comp=s_ids[:, Ls:].to(d), mask=cmask.to(d), Ls=Ls, Lt=Lt, T=T)
    return model, batch


def naive_logp(model, ids, am, L, T):
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    return model(input_ids=ids, attention_mask=am, position_ids=pos).logits[:, L - 1:L - 1 + T].float().log_softmax(-1)


def step(model, b, loss, form, chunk):
    from hindsight_ref.losses import chunked_distill_loss, distill_loss, sampled_token_loss
    from hindsight_ref.signal import completion_hidden, completion_logprobs
    if loss == "sampled_token":
        if form == "naive":
            with torch.no_grad(): lt = naive_logp(model, *b["Tt"], b["Lt"], b["T"]).gather(-1, b["comp"][..., None])[..., 0]
            ls = naive_logp(model, *b["S"], b["Ls"], b["T"]).gather(-1, b["comp"][..., None])[..., 0]
        else:
            with torch.no_grad(): lt = completion_logprobs(model, *b["Tt"], b["comp"], b["Lt"], chunk_size=chunk)
            ls = completion_logprobs(model, *b["S"], b["comp"], b["Ls"], chunk_size=chunk)
        out = sampled_token_loss(ls, lt, b["mask"])
    else:
        if form == "naive":
            with torch.no_grad(): lt = naive_logp(model, *b["Tt"], b["Lt"], b["T"])
            out = distill_loss(naive_logp(model, *b["S"], b["Ls"], b["T"]), lt, b["mask"])
        else:
            with torch.no_grad(): ht = completion_hidden(model, *b["Tt"], b["Lt"], b["T"])
            hs = completion_hidden(model, *b["S"], b["Ls"], b["T"])
            out = chunked_distill_loss(hs, ht, model.get_output_embeddings(), b["mask"], chunk_size=chunk)
    out.backward()
    return out


def measure(args):
    "Run one (loss, form) in this process and print a JSON line."
    model, b = build(args)
    cuda = args.device.startswith("cuda")
    if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    else: base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    out = step(model, b, args.loss, args.form, args.chunk)
    if cuda: torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
    g = torch.cat([p.grad.flatten().float().cpu() for p in model.parameters() if p.grad is not None])
    torch.save(g, args.grad_out)
    print(json.dumps(dict(loss=args.loss, form=args.form, value=out.item(), seconds=dt, peak_mb=peak / 2**20)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu"); ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--context", type=int, default=128); ap.add_argument("--completion", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=49152); ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2); ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--loss"); ap.add_argument("--form"); ap.add_argument("--grad-out")
    args = ap.parse_args()
    if args.form: return measure(args)
    B, T, V = args.batch, args.completion, args.vocab
    print(f"device {args.device}; B={B}, completion T={T}, context {args.context}, V={V}, hidden {args.hidden}, "
          f"{args.layers} layers, chunk {args.chunk}; one float32 [B, T, V] tensor = {B * T * V * 4 / 2**20:.0f} MB")
    print(f"{'loss':>14} {'form':>8} {'value':>12} {'seconds':>8} {'peak MB':>9} {'max|dgrad|':>11}")
    for loss in ("sampled_token", "reverse_kl"):
        grads, rows = {}, []
        for form in ("naive", "chunked"):
            gpath = f"/tmp/bench_grad_{loss}_{form}.pt"
            cmd = [sys.executable, __file__, "--loss", loss, "--form", form, "--grad-out", gpath] + \
                  [f"--{k}={v}" for k, v in vars(args).items() if k in ("device", "batch", "context", "completion", "vocab", "hidden", "layers", "chunk")]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            grads[form] = torch.load(gpath); rows.append(r)
        dg = (grads["naive"] - grads["chunked"]).abs().max().item()
        for r in rows:
            print(f"{r['loss']:>14} {r['form']:>8} {r['value']:>12.6f} {r['seconds']:>8.2f} {r['peak_mb']:>9.0f} {dg:>11.1e}")


if __name__ == "__main__":
    main()
