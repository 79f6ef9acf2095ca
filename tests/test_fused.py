"""Fused head + loss: same values and gradients as the reference forms (float32, bf16), finite differences in float64, the exact
rebuild for non-uniform upstream gradients, the fused head's A is masked_advantage's, the model-level step through
train.hindsight_loss(fused=True) against the reference choice, activation checkpointing keeps the gradients."""
import pytest, torch
from hindsight_ref.fused import fused_sampled_token_loss, fused_distill_loss, head_weight
from hindsight_ref.losses import (sampled_token_loss, chunked_distill_loss, drop_first_k, reduce_tokens, masked_advantage,
                                  AllMaskedError)
from hindsight_ref.signal import selective_logprobs


def rel(a, b): return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


def case(dtype=torch.float32, B=3, T=9, H=16, V=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, T, H, generator=g).to(dtype).requires_grad_(True)
    head = torch.nn.Linear(H, V, bias=False)
    with torch.no_grad(): head.weight.copy_(torch.randn(V, H, generator=g) * 0.5)
    head.to(dtype)
    ids = torch.randint(0, V, (B, T), generator=g)
    mask = torch.rand(B, T, generator=g) > 0.3; mask[:, 0] = True
    lt = torch.randn(B, T, V, generator=g).log_softmax(-1).gather(-1, ids[..., None])[..., 0]
    return h, head, ids, mask, lt


def linear(w):
    "A bias-free nn.Linear whose weight is the tensor `w` itself."
    m = torch.nn.Linear(w.shape[1], w.shape[0], bias=False); del m.weight; m.weight = w
    return m


@pytest.mark.parametrize("center,clip,k", [(False, None, 0), (True, None, 0), (False, 0.5, 2), (True, 1.0, 1)])
@pytest.mark.parametrize("reduction", ["seq_mean", "seq_sum", "none"])
@pytest.mark.parametrize("chunk,norm", [(1, True), (7, True), (1024, True), (7, False)])
def test_sampled_token_matches_reference_fp32(center, clip, k, reduction, chunk, norm):
    h, head, ids, mask, lt = case()
    up = torch.randn(3, generator=torch.Generator().manual_seed(9)) if reduction == "none" else torch.tensor(1.0)
    out = fused_sampled_token_loss(h, head, ids, lt, mask, center, clip, k, chunk_size=chunk, reduction=reduction, length_norm=norm)
    gh, gW = torch.autograd.grad((out.loss * up).sum(), [h, head.weight])
    ls = selective_logprobs(head, h, ids, mask)
    ref = sampled_token_loss(ls, lt, mask, center=center, clip=clip, ignore_first_k=k, reduction=reduction, length_norm=norm)
    rh, rW = torch.autograd.grad((ref * up).sum(), [h, head.weight])
    assert rel(out.loss, ref) < 1e-5 and rel(gh, rh) < 1e-5 and rel(gW, rW) < 1e-5
    torch.testing.assert_close(out.logp_student, torch.where(drop_first_k(mask, k), ls, 0).detach(), atol=1e-5, rtol=0)
    # the A the fused head weighted the tokens with is the one implementation's, on its own log-probs
    torch.testing.assert_close(out.advantage, masked_advantage(lt, out.logp_student, drop_first_k(mask, k), center, clip))


@pytest.mark.parametrize("alpha", [1.0, 0.0])
@pytest.mark.parametrize("teacher_head", [False, True])
@pytest.mark.parametrize("norm", [True, False])
def test_divergences_match_reference_fp32(alpha, teacher_head, norm):
    h, head, ids, mask, lt = case(seed=1)
    ht = torch.randn(h.shape, generator=torch.Generator().manual_seed(2))
    t_head = torch.nn.Linear(16, 300, bias=False) if teacher_head else None
    out = fused_distill_loss(h, ht, head, mask, alpha=alpha, chunk_size=7, ignore_first_k=1, teacher_head=t_head,
                             completion_ids=ids, length_norm=norm)
    gh, gW = torch.autograd.grad(out.loss, [h, head.weight])
    ref = chunked_distill_loss(h, ht, head, mask, alpha=alpha, chunk_size=7, ignore_first_k=1, teacher_head=t_head, length_norm=norm)
    rh, rW = torch.autograd.grad(ref, [h, head.weight])
    assert rel(out.loss, ref) < 1e-5 and rel(gh, rh) < 1e-5 and rel(gW, rW) < 1e-5
    m = drop_first_k(mask, 1)
    torch.testing.assert_close(out.logp_student, torch.where(m, selective_logprobs(head, h, ids, mask), 0).detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logp_teacher, torch.where(m, selective_logprobs(t_head or head, ht, ids, mask), 0).detach(),
                               atol=1e-5, rtol=0)


def test_softcap_matches_reference():
    h, head, ids, mask, lt = case(seed=3)
    ht = torch.randn(h.shape, generator=torch.Generator().manual_seed(4))
    out = fused_sampled_token_loss(h, head, ids, lt, mask, chunk_size=5, softcap=2.0)
    ref = sampled_token_loss(selective_logprobs(head, h, ids, mask, softcap=2.0), lt, mask)
    for a, b in zip(torch.autograd.grad(out.loss, [h, head.weight]), torch.autograd.grad(ref, [h, head.weight])): assert rel(a, b) < 1e-5
    out = fused_distill_loss(h, ht, head, mask, chunk_size=5, softcap=2.0).loss
    ref = chunked_distill_loss(h, ht, head, mask, chunk_size=5, softcap=2.0)
    for a, b in zip(torch.autograd.grad(out, [h, head.weight]), torch.autograd.grad(ref, [h, head.weight])): assert rel(a, b) < 1e-5


@pytest.mark.parametrize("kind", ["sampled", "kl"])
def test_bf16_as_close_to_float64_as_the_reference(kind):
    "bf16 inputs: the loss equals the reference to 1e-3; each gradient is within 1e-2 of float64 and no worse than the reference's."
    h, head, ids, mask, lt = case(torch.bfloat16, seed=2)
    ht = torch.randn(h.shape, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    def forms(h, head, ht):
        if kind == "sampled":
            return (fused_sampled_token_loss(h, head, ids, lt, mask, chunk_size=7).loss,
                    sampled_token_loss(selective_logprobs(head, h, ids, mask), lt, mask))
        return fused_distill_loss(h, ht, head, mask, chunk_size=7).loss, chunked_distill_loss(h, ht, head, mask, chunk_size=7)
    (f, r) = forms(h, head, ht)
    gf, gr = torch.autograd.grad(f, [h, head.weight]), torch.autograd.grad(r, [h, head.weight])
    h64 = h.detach().double().requires_grad_(True)
    W64 = head.weight.detach().double().requires_grad_(True)
    f64 = forms(h64, linear(W64), ht.double())[0]
    g64 = torch.autograd.grad(f64, [h64, W64])
    assert rel(f.double(), r.double()) < 1e-3 and rel(f.double(), f64) < 1e-3
    for a, b, t in zip(gf, gr, g64):
        assert rel(a.double(), t) < 1e-2 and rel(a.double(), t) < max(1.5 * rel(b.double(), t), 1e-3)


def _fd_setup(seed=4):
    g = torch.Generator().manual_seed(seed)
    B, T, H, V = 2, 4, 5, 7
    h = torch.randn(B, T, H, dtype=torch.float64, generator=g, requires_grad=True)
    W = torch.randn(V, H, dtype=torch.float64, generator=g, requires_grad=True)
    ids, mask = torch.randint(0, V, (B, T), generator=g), torch.ones(B, T, dtype=torch.bool)
    mask[1, 3] = False
    return g, h, W, ids, mask


@pytest.mark.parametrize("alpha", [1.0, 0.0])
@pytest.mark.parametrize("cap", [None, 3.0])
def test_divergence_gradcheck_float64(alpha, cap):
    g, h, W, ids, mask = _fd_setup()
    ht, W_t = torch.randn(h.shape, dtype=torch.float64, generator=g), W.detach().clone()
    assert torch.autograd.gradcheck(lambda h, W: fused_distill_loss(h, ht, linear(W), mask, alpha=alpha, chunk_size=3,
                                    reduction="none", softcap=cap, teacher_head=linear(W_t)).loss, (h, W))


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("cap", [None, 3.0])
def test_sampled_token_finite_differences_with_A_frozen(center, cap):
    "The surrogate's gradient is -sum A_i grad log pi(y_i) with A fixed: central differences of that, along random directions."
    g, h, W, ids, mask = _fd_setup()
    lt = torch.randn(mask.shape, dtype=torch.float64, generator=g)
    out = fused_sampled_token_loss(h, linear(W), ids, lt, mask, center=center, clip=0.8, chunk_size=3, softcap=cap)
    gh, gW = torch.autograd.grad(out.loss, [h, W])
    A0 = torch.where(mask, (lt - out.logp_student).clamp(-0.8, 0.8), 0)
    if center: A0 = torch.where(mask, A0 - A0.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True), 0)
    frozen = lambda hh, WW: reduce_tokens(-A0 * fused_sampled_token_loss(hh, linear(WW), ids, lt, mask, softcap=cap).logp_student, mask)
    for _ in range(4):
        vh, vW = torch.randn(h.shape, generator=g, dtype=h.dtype), torch.randn(W.shape, generator=g, dtype=W.dtype)
        fd = (frozen(h + 1e-6 * vh, W + 1e-6 * vW) - frozen(h - 1e-6 * vh, W - 1e-6 * vW)) / 2e-6
        an = (gh * vh).sum() + (gW * vW).sum()
        assert abs(fd - an).item() < 1e-5 * max(abs(fd).item(), 1e-3)


def test_frozen_head_and_no_grad():
    "A head without grad (LoRA leaves it frozen) gets no gradient; under no_grad the values are the same and nothing is stored."
    h, head, ids, mask, lt = case(seed=5)
    head.weight.requires_grad_(False)
    out = fused_sampled_token_loss(h, head, ids, lt, mask)
    (gh,) = torch.autograd.grad(out.loss, [h])
    ref = sampled_token_loss(selective_logprobs(head, h, ids, mask), lt, mask)
    assert rel(gh, torch.autograd.grad(ref, [h])[0]) < 1e-5
    with torch.no_grad(): v = fused_sampled_token_loss(h, head, ids, lt, mask).loss
    assert not v.requires_grad and abs(v.item() - out.loss.item()) < 1e-6


def test_errors_name_the_fix():
    h, head, ids, mask, lt = case()
    with pytest.raises(TypeError, match="reference"):
        fused_sampled_token_loss(h, torch.nn.Linear(16, 300), ids, lt, mask)           # a bias
    with pytest.raises(TypeError, match="reference"):
        head_weight(torch.nn.Sequential(head))                                          # not a plain linear (e.g. LoRA)
    with pytest.raises(ValueError, match="chunked_distill_loss"):
        fused_distill_loss(h, h, head, mask, alpha=0.5)
    with pytest.raises(AllMaskedError):
        fused_sampled_token_loss(h, head, ids, lt, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="chunk_size"):
        fused_sampled_token_loss(h, head, ids, lt, mask, chunk_size=0)


@pytest.fixture(scope="module")
def tiny_batch(tok):
    from hindsight_ref.models import tiny_model
    from hindsight_ref.data import fixture_interactions
    from hindsight_ref.contexts import encode_interactions, collate
    model, _ = tiny_model(tokenizer=tok, n_layers=4, init_std=0.125, logit_scale=3.0)
    return model, collate(encode_interactions(tok, fixture_interactions()[:4]), tok.pad_token_id, ignore_first_k=2)


@pytest.mark.parametrize("kw", [dict(loss="sampled_token"), dict(loss="sampled_token", center=True, clip=2.0),
                                dict(loss="full"), dict(loss="full", alpha=0.0), dict(loss="full", center=True, clip=1.0),
                                dict(loss="sampled_token", length_norm=False)])
def test_fused_choice_matches_the_reference_choice(tiny_batch, kw):
    "hindsight_loss(fused=True) against fused=False: per-sequence loss, every parameter's gradient, A and both log-probs."
    from hindsight_ref.train import hindsight_loss
    model, batch = tiny_batch
    outs = {}
    for fused in (False, True):
        model.zero_grad(set_to_none=True)
        out = hindsight_loss(model, batch, chunk_size=64, fused=fused, **kw)
        (out.loss.sum() / len(out.loss)).backward()
        outs[fused] = out, [p.grad.clone() for p in model.parameters()]
    (ref, g_ref), (got, g_got) = outs[False], outs[True]
    assert rel(got.loss, ref.loss) < 1e-5 and max(rel(a, b) for a, b in zip(g_got, g_ref) if b.norm() > 0) < 1e-5
    for k in ("logp_student", "logp_teacher", "advantage"): assert rel(getattr(got, k), getattr(ref, k)) < 1e-5, k
    torch.testing.assert_close(got.advantage, masked_advantage(got.logp_teacher, got.logp_student, got.mask, kw.get("center", False),
                                                               kw.get("clip")))


def test_activation_checkpointing_keeps_the_gradients(tok, tiny_batch):
    "Checkpointing (full, selective, a fraction of the layers) recomputes the same operations: gradients unchanged in float32."
    from hindsight_ref.models import tiny_model
    from hindsight_ref.train import configure_step, hindsight_loss
    _, batch = tiny_batch
    fresh = lambda: tiny_model(tokenizer=tok, n_layers=4, init_std=0.125, logit_scale=3.0)[0].train()
    def step(m):
        m.zero_grad(set_to_none=True)
        hindsight_loss(m, batch, chunk_size=64, fused=True).loss.mean().backward()
        return [p.grad.clone() for p in m.parameters()]
    base = step(fresh())
    for kw, flags in [(dict(activation_checkpointing="full"), [True] * 4), (dict(activation_checkpointing="selective"), [True] * 4),
                      (dict(activation_checkpointing="full", checkpoint_fraction=0.5), [False, True, False, True]),
                      (dict(checkpoint_fraction=0.5), [False] * 4), ({}, [False] * 4)]:
        m = configure_step(fresh(), "fused", **kw)
        assert [l.gradient_checkpointing for l in m.get_decoder().layers] == flags, kw
        assert max(rel(a, b) for a, b in zip(step(m), base) if b.norm() > 0) < 1e-6, kw
    with pytest.raises(ValueError, match="reference"): configure_step(fresh(), "speed")
    with pytest.raises(ValueError, match="checkpoint_fraction"): configure_step(fresh(), "fused", "full", checkpoint_fraction=2)
    with pytest.raises(ValueError, match="activation_checkpointing"): configure_step(fresh(), "fused", "partial")
