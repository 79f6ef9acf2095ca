"""On-policy sampling: the sampled distribution is exactly the configured one (and generate's default is not), top-p equals a
brute-force nucleus, greedy equals generate, stopping, determinism, reported log-probs, long contexts, the fast path."""
import math
from fractions import Fraction
import pytest, torch
from hindsight_ref.sampling import sample_completions, sampling_logprobs, Samples
from hindsight_ref.contexts import end_of_turn_id, render_chat, tokenize_text
from hindsight_ref.data import fixture_interactions
from hindsight_ref.signal import completion_logprobs

X1 = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def peaked(tok):
    "A tiny model that reads its context, with a real-model-like peaked next-token distribution (top-50 mass ~0.6)."
    from hindsight_ref.models import tiny_model
    return tiny_model(tokenizer=tok, init_std=0.125, logit_scale=20.0)


@pytest.fixture(scope="module")
def xs():
    return [it.x for it in fixture_interactions()[:5]]


def _next_logits(model, tok, x):
    ctx = tokenize_text(tok, render_chat(tok, x))
    with torch.no_grad(): return model(input_ids=torch.tensor([ctx])).logits[0, -1].float(), ctx


def _tv(tokens, p, K=20, alpha=1e-6):
    "Total variation over K equal-mass bins and the Bretagnolle-Huber-Carol threshold: P(TV >= eps) <= 2^K exp(-2 N eps^2) = alpha."
    order = p.double().sort(descending=True).indices
    cum = p.double()[order].cumsum(0) - p.double()[order]
    bins = torch.empty_like(order); bins[order] = (cum * K).floor().long().clamp(max=K - 1)
    exact = torch.zeros(K, dtype=torch.float64).index_add(0, bins, p.double())
    emp = torch.bincount(bins[tokens], minlength=K).double() / len(tokens)
    return 0.5 * (emp - exact).abs().sum().item(), math.sqrt((K * math.log(2) + math.log(1 / alpha)) / (2 * len(tokens)))


N = 3000   # eps(1e-6) = 0.068; the top-50 cut moves ~0.4 of the mass here


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_one_token_samples_follow_softmax_logits_over_T(peaked, temperature):
    model, tok = peaked
    z, _ = _next_logits(model, tok, X1)
    s = sample_completions(model, tok, [X1] * N, max_new_tokens=1, temperature=temperature, batch_size=1000, seed=3)
    t = torch.tensor([c[0] for c in s.completion_ids])
    d, eps = _tv(t, (z / temperature).softmax(-1))
    assert d < eps, (d, eps)
    # reported log-probs: log q = log softmax(z/T), log pi = log softmax(z)
    torch.testing.assert_close(torch.cat(s.logprobs), (z / temperature).log_softmax(-1)[t], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(s.policy_logprobs), z.log_softmax(-1)[t], atol=1e-5, rtol=0)


def test_top_k_50_fails_the_same_test(peaked):
    "The test has power: forcing top-k 50 (generate's default) is detected, by our sampler and by generate itself."
    model, tok = peaked
    z, ctx = _next_logits(model, tok, X1)
    p = z.softmax(-1)
    assert 0.2 < 1 - p.topk(50).values.sum() < 0.8                  # the cut matters at this context
    s = sample_completions(model, tok, [X1] * N, max_new_tokens=1, top_k=50, batch_size=1000, seed=3)
    d, eps = _tv(torch.tensor([c[0] for c in s.completion_ids]), p)
    assert d > 3 * eps, (d, eps)
    ids = torch.tensor([ctx] * 1000)
    gen = torch.cat([model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0,
                                    top_p=1.0, max_new_tokens=1, pad_token_id=tok.pad_token_id)[:, -1] for _ in range(N // 1000)])
    d, eps = _tv(gen, p)
    assert d > 3 * eps and set(gen.tolist()) <= set(p.topk(50).indices.tolist())


def test_use_generation_config_applies_the_checkpoint_settings(peaked):
    "Off by default; on request, the generation_config's top-k is applied (and is then detected)."
    model, tok = peaked
    z, _ = _next_logits(model, tok, X1)
    old = model.generation_config
    try:
        model.generation_config = type(old)(do_sample=True, top_k=20, temperature=1.0, top_p=1.0)
        on = sample_completions(model, tok, [X1] * 2000, max_new_tokens=1, batch_size=1000, seed=4, use_generation_config=True)
        off = sample_completions(model, tok, [X1] * 2000, max_new_tokens=1, batch_size=1000, seed=4)
    finally:
        model.generation_config = old
    top20 = set(z.topk(20).indices.tolist())
    assert {c[0] for c in on.completion_ids} <= top20 and not {c[0] for c in off.completion_ids} <= top20


def _brute_nucleus(probs, p):
    acc, last = Fraction(0), None
    for v in sorted(probs, reverse=True):
        acc += v; last = v
        if acc >= p: break
    return {i for i, v in enumerate(probs) if v >= last and v > 0}


def test_top_p_equals_brute_force_nucleus_with_ties():
    g = torch.Generator().manual_seed(7)
    for trial in range(300):
        counts = torch.randint(0, 5, (10,), generator=g); counts[trial % 10] += 1
        probs = [Fraction(int(c), int(counts.sum())) for c in counts]
        p = Fraction(int(torch.randint(1, 20, (1,), generator=g)), 20) + Fraction(1, 1000)   # >= 1e-5 off every partial sum
        z = torch.tensor([math.log(c) if c else -math.inf for c in counts.tolist()], dtype=torch.float64) + 3.0
        for T in (1.0,):
            q = sampling_logprobs(z, temperature=T, top_p=float(p)).exp()
            keep = _brute_nucleus(probs, p)
            assert {i for i in range(10) if q[i] > 0} == keep, (counts.tolist(), p)
            mass = sum(probs[i] for i in keep)
            torch.testing.assert_close(q[sorted(keep)], torch.tensor([float(probs[i] / mass) for i in sorted(keep)]),
                                       atol=1e-6, rtol=0)


def test_top_p_sampling_stays_in_the_nucleus_and_follows_it(peaked):
    model, tok = peaked
    z, _ = _next_logits(model, tok, X1)
    q = sampling_logprobs(z, top_p=0.8).exp()
    s = sample_completions(model, tok, [X1] * 2000, max_new_tokens=1, top_p=0.8, batch_size=1000, seed=5)
    t = torch.tensor([c[0] for c in s.completion_ids])
    d, eps = _tv(t, q)
    assert (q[t] > 0).all() and d < eps


def test_filters_validate_and_compose():
    z = torch.tensor([3.0, 1.0, 1.0, 0.0, -2.0])
    assert torch.equal(sampling_logprobs(z, temperature=0).exp(), torch.tensor([1.0, 0, 0, 0, 0]))
    q = sampling_logprobs(z, top_k=2).exp()                     # ties at the k-th logit are kept: 3 tokens
    assert (q > 0).tolist() == [True, True, True, False, False]
    torch.testing.assert_close(q[:3], z[:3].softmax(-1))
    for bad, msg in [(dict(temperature=-1), "temperature"), (dict(top_p=1.5), "top_p"), (dict(top_k=0), "top_k")]:
        with pytest.raises(ValueError, match=msg): sampling_logprobs(z, **bad)


def _generate_greedy(model, tok, ctxs, n, eot):
    L = max(map(len, ctxs))
    ids = torch.full((len(ctxs), L), tok.pad_token_id); am = torch.zeros_like(ids)
    for b, c in enumerate(ctxs): ids[b, L - len(c):] = torch.tensor(c); am[b, L - len(c):] = 1
    out = model.generate(input_ids=ids, attention_mask=am, do_sample=False, max_new_tokens=n, eos_token_id=eot,
                         pad_token_id=tok.pad_token_id)[:, L:].tolist()
    return [r[:r.index(eot) + 1] if eot in r else r for r in out]


def test_greedy_equals_generate_with_left_padding(peaked, xs):
    model, tok = peaked
    s = sample_completions(model, tok, xs, max_new_tokens=12, temperature=0)
    assert len(set(map(len, s.context_ids))) > 1                   # rows of different lengths: left padding is exercised
    assert s.completion_ids == _generate_greedy(model, tok, s.context_ids, 12, end_of_turn_id(tok))
    assert all(float(v.abs().max()) == 0.0 for v in s.logprobs)     # greedy: q is a point mass


def test_rows_stop_at_end_of_turn(peaked, xs):
    "A row that produces the end-of-turn token stops there (finished) while the others go on."
    model, tok = peaked
    free = sample_completions(model, tok, xs, max_new_tokens=10, temperature=0)
    stop = free.completion_ids[0][3]                                # make row 0's 4th greedy token the end of turn
    s = sample_completions(model, tok, xs, max_new_tokens=10, temperature=0, eot_id=stop)
    for b, c in enumerate(free.completion_ids):
        k = c.index(stop) + 1 if stop in c else len(c)
        assert s.completion_ids[b] == c[:k] and s.finished[b] == (stop in c)
        assert len(s.policy_logprobs[b]) == len(s.logprobs[b]) == k
    assert s.finished[0] and len(s.completion_ids[0]) <= 4


def test_seed_and_generator_make_draws_reproducible(peaked, xs):
    model, tok = peaked
    a = sample_completions(model, tok, xs, max_new_tokens=8, seed=11)
    b = sample_completions(model, tok, xs, max_new_tokens=8, generator=torch.Generator().manual_seed(11))
    c = sample_completions(model, tok, xs, max_new_tokens=8, seed=12)
    assert a.completion_ids == b.completion_ids and a.completion_ids != c.completion_ids
    with pytest.raises(ValueError, match="not both"):
        sample_completions(model, tok, xs, seed=1, generator=torch.Generator())


def test_reported_logprobs_equal_a_plain_rescoring(peaked, xs):
    "log pi and log q of every sampled token equal what a teacher-forced forward gives (pi: the loss's own scorer)."
    model, tok = peaked
    s = sample_completions(model, tok, xs, max_new_tokens=10, temperature=0.8, top_p=0.9, seed=1)
    L, T = max(map(len, s.context_ids)), max(map(len, s.completion_ids))
    ids = torch.full((len(xs), L + T), tok.pad_token_id); am = torch.zeros_like(ids); comp = torch.zeros(len(xs), T, dtype=torch.long)
    for b, (c, y) in enumerate(zip(s.context_ids, s.completion_ids)):
        ids[b, L - len(c):L] = torch.tensor(c); ids[b, L:L + len(y)] = torch.tensor(y); am[b, L - len(c):L + len(y)] = 1
        comp[b, :len(y)] = torch.tensor(y)
    with torch.no_grad():
        lp = completion_logprobs(model, ids, am, comp, L)
        pos = (am.cumsum(-1) - 1).clamp(min=0)
        z = model(input_ids=ids, attention_mask=am, position_ids=pos).logits[:, L - 1:L - 1 + T]
    lq = sampling_logprobs(z, temperature=0.8, top_p=0.9).gather(-1, comp[..., None])[..., 0]
    for b, (v, q) in enumerate(zip(s.policy_logprobs, s.logprobs)):
        torch.testing.assert_close(lp[b, :len(v)], v, atol=1e-4, rtol=0)      # log pi: the loss's own scorer
        torch.testing.assert_close(lq[b, :len(q)], q, atol=1e-4, rtol=0)      # log q: the same filters on re-scored logits


def test_long_context_is_an_error_that_names_the_fix(peaked, xs):
    model, tok = peaked
    with pytest.raises(ValueError, match="truncate_context=True"):
        sample_completions(model, tok, xs, max_context_tokens=16, max_new_tokens=2)
    with pytest.raises(ValueError, match="max_position_embeddings"):     # room for the new tokens counts too
        sample_completions(model, tok, xs, max_context_tokens=10_000, max_new_tokens=4096 - 10)
    with pytest.warns(UserWarning, match="cut on the left"):
        s = sample_completions(model, tok, xs, max_context_tokens=16, max_new_tokens=2, truncate_context=True, seed=0)
    full = sample_completions(model, tok, xs, max_new_tokens=2, seed=0)
    assert all(len(c) == 16 for c in s.context_ids)
    assert s.truncated == [len(c) - 16 for c in full.context_ids]
    assert all(c[-16:] == d for c, d in zip(full.context_ids, s.context_ids))   # the oldest tokens are the ones cut


def test_fast_path_gives_the_plain_greedy_tokens(peaked, xs):
    "Static cache (+ compiled step on CUDA; plain here): same greedy tokens in float32, close log-probs, reusable."
    model, tok = peaked
    plain = sample_completions(model, tok, xs, max_new_tokens=12, temperature=0)
    for _ in range(2):                                              # the second call reuses the cache: reset works
        fast = sample_completions(model, tok, xs, max_new_tokens=12, temperature=0, fast=True, batch_size=2)
        assert fast.completion_ids == plain.completion_ids and fast.finished == plain.finished
        for a, b in zip(fast.policy_logprobs, plain.policy_logprobs): torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_qwen3_toy_samples_with_its_template():
    "The sampler on a toy Qwen3 (its own chat template, thinking off): ends at <|im_end|> when forced, ids in range."
    from hindsight_ref.models import random_model
    model, tok = random_model("qwen3-0.6b", toy=True)
    s = sample_completions(model, tok, [X1, [{"role": "user", "content": "Hi"}]], max_new_tokens=6, seed=0)
    assert isinstance(s, Samples) and len(s) == 2 and all(0 <= t < model.config.vocab_size for c in s.completion_ids for t in c)
    assert tok.decode(s.context_ids[0]).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert end_of_turn_id(tok) == tok.convert_tokens_to_ids("<|im_end|>")
