"""The hindsight step at hardware speed: the naive reference and hindsight_ref's step modes, side by side in one process.

    python benchmarks/bench_step.py                      # CPU, a toy Qwen3 shape: the whole run takes well under 3 minutes
    python benchmarks/bench_step.py --gpu                # CUDA: Qwen3-0.6B shape, bf16, B=8, prompt 256, hindsight 256, completion 1024
    python benchmarks/bench_step.py --gpu --update-doc docs/speed.md --json results.json

Rows, each on a fresh model with the same seed, the same batch and AdamW:

- naive: what the official code does. Two separate forwards (teacher under no_grad, then student), the full logits
  [B, L, V] of both, a float32 log_softmax over the vocabulary, the loss on top (sampled-token: gather the completion
  tokens; full: reverse KL over the vocabulary per position).
- reference: hindsight_ref's reference step (`train.hindsight_loss`: decoder states sliced to the completion, LM head +
  log-softmax in recomputed chunks).
- speed / memory: `train.hindsight_loss(..., fused=True)` after `train.configure_step` (step_mode: fused, the fused LM head
  + loss; speed: decoder layers compiled on CUDA; memory: also activation_checkpointing: full).
- rollouts: `model.generate` (greedy, default dynamic cache) against `sampling.sample_completions` plain and fast
  (static cache + compiled decode step on CUDA).

Before timing, each fast path is verified against the naive one: in float32 (no compilation) loss and gradients must
agree to a relative error below 1e-5; in the timed dtype the relative errors are printed (bf16 target 1e-3). Figures
are medians over repeats. Response tokens/s counts completion tokens per second of a whole step (forward, backward,
optimizer). TFLOP/s uses one FLOP count for every row (2 x parameters x tokens per forward, 3x that with the backward,
plus attention), the work of a plain step, so it is proportional to throughput; the ceiling is a large matrix product
measured in the same run (bf16 on GPU, float32 on CPU). Peak memory: torch.cuda.max_memory_allocated on GPU; on CPU the
peak growth of the resident set over the step, sampled every millisecond (large blocks are returned to the OS, see
`cpu_memory_tracks_use`), so CPU memory figures are approximate.
"""
import argparse, ctypes, gc, json, os, platform, statistics, threading, time
from pathlib import Path

import torch

from hindsight_ref.models import eval_mode, random_model
from hindsight_ref.losses import reduce_tokens
from hindsight_ref.signal import completion_logprobs
from hindsight_ref.train import configure_step, hindsight_loss

GPU = dict(arch="qwen3-0.6b", toy=False, batch=8, prompt=256, hindsight=256, completion=1024, dtype="bfloat16", repeats=3,
           warmup=2, chunk=1024, chunk_memory=256, rollout_batch=64, rollout_prompt=128, rollout_new=256, verify_batch=2,
           verify_completion=128)
CPU = dict(arch="qwen3-0.6b", toy=True, batch=2, prompt=16, hindsight=8, completion=48, dtype="float32", repeats=3, warmup=0,
           chunk=48, chunk_memory=16, rollout_batch=4, rollout_prompt=16, rollout_new=16, verify_batch=2, verify_completion=8)
TOY = dict(num_hidden_layers=4)   # the CPU shape: toy Qwen3 (real vocabulary, hidden 64, 4 layers)


# ---- the batch: the layout of hindsight_ref.contexts.collate -------------------------------------------------------------
def make_batch(B, prompt, hindsight, completion, V, device, seed=0):
    "Student (x, y) and teacher (x, o, y) ids of full length (no padding), completions of random tokens."
    g = torch.Generator().manual_seed(seed)
    x, o, y = (torch.randint(10, V - 10, (B, n), generator=g) for n in (prompt, hindsight, completion))
    b = {}
    for side, ctx in (("student", x), ("teacher", torch.cat([x, o], 1))):
        ids = torch.cat([ctx, y], 1)
        b[f"{side}_input_ids"], b[f"{side}_attention_mask"] = ids.to(device), torch.ones_like(ids).to(device)
        b[f"{side}_position_ids"] = torch.arange(ids.shape[1]).expand_as(ids).to(device)
        b[f"{side}_context_len"] = ctx.shape[1]
    b["completion_ids"] = y.to(device)
    b["completion_mask"] = b["loss_mask"] = torch.ones_like(y, dtype=torch.bool).to(device)
    return b


# ---- the naive reference: what the official code does ---------------------------------------------------------------------
def naive_logp(model, b, side):
    "Full logits [B, L, V], sliced to the positions that predict the completion, float32 log_softmax over the vocabulary."
    L, T = b[f"{side}_context_len"], b["completion_ids"].shape[1]
    logits = model(input_ids=b[f"{side}_input_ids"], attention_mask=b[f"{side}_attention_mask"],
                   position_ids=b[f"{side}_position_ids"], use_cache=False).logits
    return logits[:, L - 1:L - 1 + T].float().log_softmax(-1)


def naive_terms(model, b, loss):
    "Per-token loss terms [B, T]: -stopgrad(A_i) log p(y_i) (sampled-token) or KL(student || teacher) at each position."
    with torch.no_grad(): lt = naive_logp(model, b, "teacher")
    ls = naive_logp(model, b, "student")
    if loss == "sampled_token":
        ids = b["completion_ids"][..., None]
        ls_y, lt_y = ls.gather(-1, ids)[..., 0], lt.gather(-1, ids)[..., 0]
        return -(lt_y - ls_y).detach() * ls_y
    return (ls.exp() * (ls - lt)).sum(-1)


def naive_loss(model, b, loss):
    return reduce_tokens(naive_terms(model, b, loss), b["loss_mask"])


def reference_loss(model, b, loss, chunk):
    return hindsight_loss(model, b, loss=loss, chunk_size=chunk).loss.mean()


def fast_loss(model, b, loss, chunk):
    return hindsight_loss(model, b, loss=loss, chunk_size=chunk, fused=True).loss.mean()


def setup(model, mode, compile=None):
    "The model as the row's mode runs it: speed = step_mode fused; memory = fused + activation_checkpointing full."
    return configure_step(model, "fused" if mode in ("speed", "memory") else "reference",
                          "full" if mode == "memory" else None, compile=compile)


# ---- measuring ------------------------------------------------------------------------------------------------------------
class PeakRSS:
    "Peak growth of the resident set while the block runs, sampled every millisecond (CPU)."
    def __enter__(self):
        self.base = self.peak = self._rss()
        self.run = True
        self.t = threading.Thread(target=self._poll, daemon=True); self.t.start()
        return self
    def _rss(self):
        with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    def _poll(self):
        while self.run: self.peak = max(self.peak, self._rss()); time.sleep(0.001)
    def __exit__(self, *a):
        self.run = False; self.t.join(); self.peak = max(self.peak, self._rss())
    @property
    def grown(self): return self.peak - self.base


def cpu_memory_tracks_use():
    "glibc: serve blocks above 64 KB with mmap and give them back on free, so that the resident set follows live tensors."
    try: libc = ctypes.CDLL("libc.so.6")
    except OSError: return False
    return bool(libc.mallopt(-3, 65536)) and bool(libc.mallopt(-1, 0))       # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD


def sync(dev):
    if dev.startswith("cuda"): torch.cuda.synchronize()


def matmul_ceiling(dev):
    "TFLOP/s of a large matrix product: bf16 8192^3 on a GPU, float32 1024^3 on a CPU."
    n, dt = (8192, torch.bfloat16) if dev.startswith("cuda") else (1024, torch.float32)
    a, b_ = torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)
    for _ in range(3): a @ b_
    sync(dev); ts = []
    for _ in range(5 if dev.startswith("cuda") else 3):
        t0 = time.perf_counter(); a @ b_; sync(dev); ts.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(ts) / 1e12


def step_flops(cfg, B, Ls, Lt, T):
    "FLOPs of a plain step: teacher forward over (x, o, y), student forward + backward over (x, y), head on every position."
    H, nl, hd = cfg.hidden_size, cfg.num_hidden_layers, getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_tok = 2 * (nl * (H * hd * (2 * cfg.num_attention_heads + 2 * cfg.num_key_value_heads) + 3 * H * cfg.intermediate_size)
                   + H * cfg.vocab_size)
    attn = lambda L: 2 * 2 * nl * cfg.num_attention_heads * hd * L * L / 2          # QK^T and AV, causal half
    return B * (per_tok * Lt + attn(Lt)) + 3 * B * (per_tok * (Ls + T) + attn(Ls + T))


TOKENIZER = {}    # the architecture's tokenizer, loaded once


def build(a, dev, dtype, seed=0, reads_context=False):
    "A fresh random model of the benchmark shape; `reads_context`: init std 0.1, so that A is not vanishingly small."
    from hindsight_ref.models import architecture_tokenizer, load_tokenizer
    if "tok" not in TOKENIZER: TOKENIZER["tok"] = load_tokenizer(a["tokenizer"]) if a.get("tokenizer") else architecture_tokenizer(a["arch"])
    kw = dict(TOY) if a["toy"] else {}
    if reads_context: kw["initializer_range"] = 0.1
    model, tok = random_model(a["arch"], tokenizer=TOKENIZER["tok"], toy=a["toy"], dtype=dtype, seed=seed, device=dev, **kw)
    return model.train(), tok


def grads(model):
    return torch.cat([p.grad.detach().float().flatten() for p in model.parameters() if p.grad is not None])


def rel(x, y): return ((x - y).norm() / y.norm().clamp(min=1e-30)).item()


def chunk_of(a, mode): return a["chunk_memory"] if mode == "memory" else a["chunk"]


def loss_fn(loss, mode, chunk):
    if mode == "naive": return lambda m, b: naive_loss(m, b, loss)
    if mode == "reference": return lambda m, b: reference_loss(m, b, loss, chunk)
    return lambda m, b: fast_loss(m, b, loss, chunk)


def first_step(model, fn, batch):
    "Loss and flattened gradients (kept on the CPU) of one step without an optimizer step; the gradients are cleared after."
    val = fn(model, batch); val.backward()
    out = (val.detach().float().cpu(), grads(model).cpu())
    model.zero_grad(set_to_none=True)
    return out


NAIVE = {}   # (loss, dtype, which batch) -> loss and gradients of the naive step on the shared initial weights


def naive_ref(a, dev, loss, dtype, batch, key, model=None):
    "The naive step's loss, gradients and loss scale on fresh weights (all models share one seed), computed once."
    if (loss, dtype, key) not in NAIVE:
        m = model if model is not None else build(a, dev, dtype, reads_context=True)[0]
        terms = naive_terms(m, batch, loss)
        scale = reduce_tokens(terms.detach().abs(), batch["loss_mask"]).float().cpu()
        val = reduce_tokens(terms, batch["loss_mask"]); val.backward()
        NAIVE[(loss, dtype, key)] = (val.detach().float().cpu(), grads(m).cpu(), scale)
        m.zero_grad(set_to_none=True)
        del m, terms, val; gc.collect()
        if dev.startswith("cuda"): torch.cuda.empty_cache()
    return NAIVE[(loss, dtype, key)]


def errors(got, ref):
    "Relative errors of (loss, gradients); the loss's against its scale, the mean |term| (the sampled-token terms cancel)."
    return (got[0] - ref[0]).abs().item() / max(ref[0].abs().item(), ref[2].item(), 1e-30), rel(got[1], ref[1])


def prepare(a, dev, dtype, loss, mode, batch, vbatch):
    "Build the timed model; its first step, compared with the naive one, doubles as warm-up; float32 checked without compiling."
    r, fn = dict(kind="step", loss=loss, mode=mode), loss_fn(loss, mode, chunk_of(a, mode))
    if mode != "naive" and dtype != torch.float32:          # the float32 check on a small batch, no compilation
        m, _ = build(a, dev, torch.float32, reads_context=True)
        setup(m, mode, compile=False)
        r["err32"] = errors(first_step(m, fn, vbatch), naive_ref(a, dev, loss, torch.float32, vbatch, "verify"))
        del m; gc.collect()
        if max(r["err32"]) > 1e-5: raise AssertionError(f"float32 check failed: relative errors {r['err32']}")
    model, _ = build(a, dev, dtype, reads_context=True)     # the weights do not change the speed; this init reads context
    setup(model, mode)
    t0 = time.perf_counter()
    if mode == "naive": naive_ref(a, dev, loss, dtype, batch, "timed", model); got = None
    else:
        got = first_step(model, fn, batch)                  # (compilation happens here)
        e = errors(got, naive_ref(a, dev, loss, dtype, batch, "timed"))
        if dtype == torch.float32:
            r["err32"] = e
            if max(e) > 1e-5: raise AssertionError(f"float32 check failed: relative errors {e}")
        else: r["err_dt"] = e
    del got
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    for p in model.parameters():                            # allocate AdamW's state now: timed steps run at steady memory
        if p.requires_grad: p.grad = torch.zeros_like(p)
    opt.step(); opt.zero_grad(set_to_none=True)
    def step():
        opt.zero_grad(set_to_none=True)
        fn(model, batch).backward(); opt.step()
    for _ in range(a["warmup"]): step()
    sync(dev); r["warmup_s"] = time.perf_counter() - t0
    return r, step


def timed(step, dev):
    "Seconds and peak memory (bytes: CUDA peak allocation, or growth of the CPU resident set) of one step."
    if dev.startswith("cuda"):                              # no polling thread here: it would compete for the GIL
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter(); step(); sync(dev)
        return time.perf_counter() - t0, torch.cuda.max_memory_allocated()
    with PeakRSS() as rss:
        t0 = time.perf_counter(); step(); t = time.perf_counter() - t0
    return t, rss.grown


def time_rows(a, dev, dtype, rows, batch, vbatch, log):
    "GPU: one row after the other (a clean peak per row). CPU: all rows prepared, then timed in turn, so load swings hit all."
    res, steps = [], []
    B, T = batch["completion_ids"].shape
    def finish(r, ts, peaks):
        r.update(seconds=statistics.median(ts), peak_gb=max(peaks) / 1e9, tok_s=B * T / statistics.median(ts))
    for loss, mode in rows:
        try:
            r, step = prepare(a, dev, dtype, loss, mode, batch, vbatch)
            if dev.startswith("cuda"):
                ts, peaks = zip(*[timed(step, dev) for _ in range(a["repeats"])])
                finish(r, ts, peaks); step = None
                gc.collect(); torch.cuda.empty_cache()
        except Exception as e:      # a row that fails is reported, the others still run
            r, step = dict(kind="step", loss=loss, mode=mode, error=f"{type(e).__name__}: {str(e)[:200]}"), None
            if dev.startswith("cuda"): gc.collect(); torch.cuda.empty_cache()
        res.append(r); steps.append(step)
        if dev.startswith("cuda") or "error" in r: log(r)
    if not dev.startswith("cuda"):
        meas = {i: [] for i, s in enumerate(steps) if s is not None}
        for _ in range(a["repeats"]):
            for i in meas: meas[i].append(timed(steps[i], dev))
        for i, m in meas.items():
            finish(res[i], *zip(*m)); log(res[i])
    return res


def tokenize_contexts(tok, xs):
    "Left-padded student contexts, rendered as the sampler renders them: (ids, attention mask, width)."
    from hindsight_ref.contexts import get_template, render_chat, tokenize_text
    ctx = [tokenize_text(tok, render_chat(tok, get_template("paper").student_messages(x))) for x in xs]
    L = max(map(len, ctx))
    ids = torch.full((len(ctx), L), tok.pad_token_id); am = torch.zeros_like(ids)
    for i, c in enumerate(ctx): ids[i, L - len(c):] = torch.tensor(c); am[i, L - len(c):] = 1
    return ids, am, L


def time_rollouts(a, dev, dtype, log):
    "Greedy rollouts: default generate vs the sampler, plain and fast; tokens identical (float32) or log-probs re-scored (bf16)."
    from hindsight_ref.sampling import sample_completions
    model, tok = build(a, dev, dtype)
    model.eval()
    g = torch.Generator().manual_seed(1)
    words = ["alpha", "beta", "gamma", "delta", "river", "stone", "cloud", "paper"]
    xs = [[{"role": "user", "content": " ".join(words[int(i)] for i in torch.randint(0, 8, (a["rollout_prompt"] // 2,), generator=g))}]
          for _ in range(a["rollout_batch"])]
    n, res = a["rollout_new"], []
    ids, am, L = tokenize_contexts(tok, xs)
    ids, am = ids.to(dev), am.to(dev)
    def generate():
        with eval_mode(model), torch.no_grad():
            return model.generate(input_ids=ids, attention_mask=am, do_sample=False, max_new_tokens=n, min_new_tokens=n,
                                  pad_token_id=tok.pad_token_id)
    fns = {"generate": generate,
           "plain": lambda: sample_completions(model, tok, xs, max_new_tokens=n, temperature=0),
           "fast": lambda: sample_completions(model, tok, xs, max_new_tokens=n, temperature=0, fast=True, batch_size=len(xs))}
    outs = {k: f() for k, f in fns.items()}                     # warm-up (compilation for the fast path)
    ts = {k: [] for k in fns}
    for _ in range(3):                                          # in turn, so that load swings hit every path alike
        for k, f in fns.items():
            sync(dev); t0 = time.perf_counter(); outs[k] = f(); sync(dev); ts[k].append(time.perf_counter() - t0)
    (gen, t_gen), (s_plain, t_plain), (s_fast, t_fast) = ((outs[k], statistics.median(ts[k])) for k in ("generate", "plain", "fast"))
    n_tok = lambda s: sum(map(len, s.completion_ids))
    check = {}
    if dtype == torch.float32:
        check["tokens identical (fast vs plain)"] = s_fast.completion_ids == s_plain.completion_ids
    # re-score the fast path's tokens with a plain teacher-forced forward (the loss's scorer)
    k = min(8, len(xs))
    T = max(map(len, s_fast.completion_ids[:k]))
    rows = [(c, y) for c, y in zip(s_fast.context_ids[:k], s_fast.completion_ids[:k])]
    ids2 = torch.full((k, L + T), tok.pad_token_id); am2 = torch.zeros_like(ids2); comp = torch.zeros(k, T, dtype=torch.long)
    for i, (c, y) in enumerate(rows):
        ids2[i, L - len(c):L] = torch.tensor(c); ids2[i, L:L + len(y)] = torch.tensor(y); am2[i, L - len(c):L + len(y)] = 1
        comp[i, :len(y)] = torch.tensor(y)
    with torch.no_grad(): lp = completion_logprobs(model, ids2.to(dev), am2.to(dev), comp.to(dev), L).float().cpu()
    diff = max((lp[i, :len(v)] - v).abs().max().item() for i, v in enumerate(s_fast.policy_logprobs[:k]))
    check["max |log pi fast - re-scored|"] = diff
    tol = 1e-4 if dtype == torch.float32 else 1e-2
    ok = diff < tol and check.get("tokens identical (fast vs plain)", True)
    for name, t, m in (("generate (default)", t_gen, int((gen[:, L:] != tok.pad_token_id).sum())), ("ours, plain", t_plain, n_tok(s_plain)),
                       ("ours, fast", t_fast, n_tok(s_fast))):
        r = dict(kind="rollout", mode=name, seconds=t, tok_s=m / t, tokens=m, check=check, ok=ok)
        log(r); res.append(r)
    return res


# ---- the table ------------------------------------------------------------------------------------------------------------
ORDER = [(l, m) for l in ("sampled_token", "full") for m in ("naive", "reference", "speed", "memory")]


def table(res, ceiling, flops):
    "Markdown table: throughput, peak memory, TFLOP/s and share of the matmul ceiling, ratios to the naive row of each loss."
    naive = {r["loss"]: r for r in res if r["kind"] == "step" and r["mode"] == "naive" and "error" not in r}
    gen = next((r for r in res if r["kind"] == "rollout" and r["mode"].startswith("generate")), None)
    out = ["| loss | path | response tok/s | peak GB | TFLOP/s | share of matmul limit | speed vs naive | memory vs naive | check |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in res:
        if r["kind"] != "step": continue
        if "error" in r:
            out.append(f"| {r['loss']} | {r['mode']} | failed: {r['error']} | | | | | | |"); continue
        n = naive.get(r["loss"])
        tf = flops / r["seconds"] / 1e12
        chk = ("" if r["mode"] == "naive" else f"fp32 rel. err. loss {r['err32'][0]:.0e}, grad {r['err32'][1]:.0e}"
               + (f"; timed dtype {r['err_dt'][0]:.0e} / {r['err_dt'][1]:.0e}" if "err_dt" in r else ""))
        out.append(f"| {r['loss']} | {r['mode']} | {r['tok_s']:,.0f} | {r['peak_gb']:.2f} | {tf:.3g} | {tf / ceiling:.0%} | "
                   + (f"{r['tok_s'] / n['tok_s']:.2f}x | {r['peak_gb'] / n['peak_gb']:.2f}x" if n else "| ") + f" | {chk} |")
    rolls = [r for r in res if r["kind"] == "rollout"]
    if rolls:
        out += ["", "| rollouts (greedy) | generated tok/s | vs generate | check |", "|---|---|---|---|"]
        for r in rolls:
            c = "; ".join(f"{k}: {v:.1e}" if isinstance(v, float) else f"{k}: {v}" for k, v in r["check"].items())
            vs = f"{r['tok_s'] / gen['tok_s']:.2f}x" if gen else ""
            out.append(f"| {r['mode']} | {r['tok_s']:,.0f} | {vs} | {c} ({'ok' if r['ok'] else 'FAILED'}) |")
    return "\n".join(out)


def machine(dev):
    if dev.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}"
    load = os.getloadavg()
    return (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min), torch {torch.__version__}")


def update_doc(path, section, text):
    "Replace the block between <!-- bench:SECTION:start --> and <!-- bench:SECTION:end --> in `path`."
    p = Path(path)
    doc = p.read_text()
    a, b = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    if a not in doc or b not in doc: raise SystemExit(f"{path} has no {a} ... {b} block to fill.")
    p.write_text(doc[:doc.index(a) + len(a)] + "\n" + text + "\n" + doc[doc.index(b):])


def render(results: dict) -> str:
    a = results["settings"]
    head = (f"Measured {results['date']} on {results['machine']}. Shape: {a['arch']}{' (toy: ' + str(TOY) + ')' if a['toy'] else ''}, "
            f"{a['dtype']}, AdamW, batch {a['batch']}, prompt {a['prompt']}, hindsight block {a['hindsight']}, completion "
            f"{a['completion']}, LM-head chunk {a['chunk']} rows ({a['chunk_memory']} in memory mode); medians of {a['repeats']} steps after "
            f"the verified first step" + (f" and {a['warmup']} warm-up steps" if a['warmup'] else "") + ". "
            f"Matmul ceiling measured in the same run: {results['ceiling']:.3g} TFLOP/s. Rollouts: batch {a['rollout_batch']}, "
            f"{a['rollout_new']} new tokens. Whole run: {results['wall_s']:.0f} s.")
    errs = "".join(f"\n\nRollouts failed: {e['error']}" for e in results.get("errors", []))
    return head + "\n\n" + table(results["rows"], results["ceiling"], results["flops"]) + errs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpu", action="store_true", help="the GPU settings (Qwen3-0.6B shape, bf16, B=8, ...) on cuda")
    ap.add_argument("--device", default=None)
    ap.add_argument("--only", default="", help="comma-separated subset: sampled,full,rollouts")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--update-doc", default=None, help="fill the table block of this markdown file (docs/speed.md)")
    ap.add_argument("--render", default=None, help="print (and with --update-doc write) the table of a saved --json file")
    ap.add_argument("--tokenizer", default=None, help="a folder with the architecture's tokenizer (default: hub cache or package)")
    for k, v in GPU.items():
        if k not in ("toy",): ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=None)
    args = ap.parse_args(argv)
    if args.render:
        results = json.loads(Path(args.render).read_text())
        text = render(results); print(text)
        if args.update_doc: update_doc(args.update_doc, results["section"], text)
        return results
    a = dict(GPU if args.gpu else CPU)
    for k in GPU:
        if getattr(args, k, None) is not None: a[k] = getattr(args, k)
    a["tokenizer"] = args.tokenizer
    dev = args.device or ("cuda" if args.gpu else "cpu")
    dtype = getattr(torch, a["dtype"])
    only = set(filter(None, args.only.split(","))) or {"sampled", "full", "rollouts"}
    t_start = time.time()
    if not dev.startswith("cuda"): cpu_memory_tracks_use()
    res = []
    def log(r):
        "Print a finished row, keep it, and save what is measured so far."
        print(json.dumps(r, default=str), flush=True)
        if all(r is not x for x in res): res.append(r)
        save()
    print(f"{machine(dev)}\nsettings: {a}", flush=True)
    ceiling = matmul_ceiling(dev)
    print(f"matmul ceiling: {ceiling:.3g} TFLOP/s", flush=True)
    model, _ = build(a, "meta", dtype)
    cfg = model.config
    batch = make_batch(a["batch"], a["prompt"], a["hindsight"], a["completion"], cfg.vocab_size, dev)
    vbatch = make_batch(a["verify_batch"], a["prompt"], a["hindsight"], a["verify_completion"], cfg.vocab_size, dev, seed=1)
    flops = step_flops(cfg, a["batch"], a["prompt"], a["prompt"] + a["hindsight"], a["completion"])
    def save():
        "Write what is measured so far (a run stopped by a time limit keeps its finished rows)."
        rows_ = sorted([r for r in res if r["kind"] != "rollout_error"], key=lambda r: (r["kind"], ORDER.index((r.get("loss"), r["mode"]))
                                                                                          if r["kind"] == "step" else 0))
        out = dict(section="gpu" if dev.startswith("cuda") else "cpu", date=time.strftime("%Y-%m-%d"), machine=machine(dev),
                   settings=a, ceiling=ceiling, flops=flops, rows=rows_, errors=[r for r in res if r["kind"] == "rollout_error"],
                   wall_s=time.time() - t_start)
        if args.json: Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        if args.update_doc: update_doc(args.update_doc, out["section"], render(out))
        return out
    def rows_for(loss, modes): return [(loss, m) for m in modes] if {"sampled_token": "sampled", "full": "full"}[loss] in only else []
    # most wanted first, so that a run stopped by a time limit has measured what matters
    time_rows(a, dev, dtype, rows_for("sampled_token", ("naive", "speed", "memory")) + rows_for("full", ("naive", "memory", "speed")),
              batch, vbatch, log)
    if "rollouts" in only:
        try: time_rollouts(a, dev, dtype, log)
        except Exception as e: log(dict(kind="rollout_error", error=f"{type(e).__name__}: {str(e)[:300]}"))
    time_rows(a, dev, dtype, rows_for("sampled_token", ("reference",)) + rows_for("full", ("reference",)), batch, vbatch, log)
    results = save()
    print("\n" + render(results))
    return results


if __name__ == "__main__":
    main()
