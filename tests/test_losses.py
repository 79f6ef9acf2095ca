"Hand-computed checks of every loss on 2- and 3-token vocabularies, and chunked == naive (value and gradient)."
import math

import pytest
import torch

from hindsight_ref.losses import (AllMaskedError, chunked_distill_loss, distill_loss, drop_first_k, ema_update_, forward_kl,
                                  generalized_jsd, reduce_tokens, reverse_kl, sampled_token_loss, masked_advantage,
                                  topk_logprobs)

ln = math.log
P = lambda *p: torch.tensor(p, dtype=torch.float64).log()   # log-probabilities of a hand-written distribution


# ---- divergences: every direction pinned by hand ------------------------------------------------------
def test_reverse_kl_two_tokens():
    # KL(s || t) = 0.5 ln(0.5/0.8) + 0.5 ln(0.5/0.2) = ln 1.25
    assert reverse_kl(P(.5, .5), P(.8, .2)).item() == pytest.approx(ln(1.25), abs=1e-12)


def test_forward_kl_two_tokens():
    # KL(t || s) = 0.8 ln(0.8/0.5) + 0.2 ln(0.2/0.5)
    assert forward_kl(P(.5, .5), P(.8, .2)).item() == pytest.approx(.8 * ln(1.6) + .2 * ln(.4), abs=1e-12)


def test_kl_directions_differ_on_three_tokens():
    s, t = P(.7, .2, .1), P(.1, .3, .6)
    rev = .7 * ln(.7 / .1) + .2 * ln(.2 / .3) + .1 * ln(.1 / .6)
    fwd = .1 * ln(.1 / .7) + .3 * ln(.3 / .2) + .6 * ln(.6 / .1)
    assert reverse_kl(s, t).item() == pytest.approx(rev, abs=1e-12)
    assert forward_kl(s, t).item() == pytest.approx(fwd, abs=1e-12)
    assert abs(rev - fwd) > 0.05


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75])
def test_generalized_jsd_mixture_convention(alpha):
    # M = (1 - alpha) * student + alpha * teacher; loss = (1 - alpha) KL(s || M) + alpha KL(t || M)
    s, t = (.5, .5), (.8, .2)
    m = [(1 - alpha) * a + alpha * b for a, b in zip(s, t)]
    kl = lambda p, q: sum(pi * ln(pi / qi) for pi, qi in zip(p, q))
    expected = (1 - alpha) * kl(s, m) + alpha * kl(t, m)
    assert generalized_jsd(P(*s), P(*t), alpha).item() == pytest.approx(expected, abs=1e-12)


def test_generalized_jsd_quarter_by_hand():
    # alpha = 1/4: M = (0.575, 0.425); the value with the roles swapped would be different
    v = .75 * (.5 * ln(.5 / .575) + .5 * ln(.5 / .425)) + .25 * (.8 * ln(.8 / .575) + .2 * ln(.2 / .425))
    assert generalized_jsd(P(.5, .5), P(.8, .2), 0.25).item() == pytest.approx(v, abs=1e-12)
    assert abs(v - 0.0368937) < 1e-6


def test_generalized_jsd_end_points_are_the_two_kls():
    s, t = P(.6, .3, .1), P(.2, .2, .6)
    assert torch.equal(generalized_jsd(s, t, 1.0), reverse_kl(s, t))
    assert torch.equal(generalized_jsd(s, t, 0.0), forward_kl(s, t))
    with pytest.raises(ValueError, match="alpha"):
        generalized_jsd(s, t, 1.5)


def test_divergences_vanish_on_equal_distributions():
    s = P(.6, .3, .1)
    for a in (0.0, 0.3, 1.0):
        assert generalized_jsd(s, s, a).abs().item() < 1e-12


# ---- top-k with tail bucket -----------------------------------------------------------------------------
def test_topk_tail_three_tokens():
    s, t = P(.5, .3, .2), P(.2, .5, .3)
    ks, kt = topk_logprobs(s, t, 1)                       # buckets: {student's top token}, tail
    assert torch.allclose(ks.exp(), torch.tensor([.5, .5], dtype=torch.float64))
    assert torch.allclose(kt.exp(), torch.tensor([.2, .8], dtype=torch.float64))
    assert reverse_kl(ks, kt).item() == pytest.approx(.5 * ln(.5 / .2) + .5 * ln(.5 / .8), abs=1e-9)


def test_topk_renormalised_without_tail():
    s, t = P(.5, .3, .2), P(.2, .5, .3)
    ks, kt = topk_logprobs(s, t, 2, add_tail=False)      # student's top 2 = tokens 0, 1; teacher read there
    assert torch.allclose(ks.exp(), torch.tensor([.625, .375], dtype=torch.float64))
    assert torch.allclose(kt.exp(), torch.tensor([2 / 7, 5 / 7], dtype=torch.float64))
    assert topk_logprobs(s, t, 1, add_tail=False)[0].exp().item() == pytest.approx(1.0)


def test_topk_indices_come_from_the_student():
    s, t = P(.1, .1, .8), P(.9, .05, .05)
    ks, kt = topk_logprobs(s, t, 1)
    assert kt.exp()[0].item() == pytest.approx(.05)     # the teacher is read at the student's top token (index 2)


# ---- the paper's sampled-token loss --------------------------------------------------------------------
def _two_sequences():
    logp_s = torch.tensor([[ln(.5), ln(.25)], [ln(.5), 0.]], requires_grad=True)
    logp_t = torch.tensor([[ln(.8), ln(.25)], [ln(.2), 0.]])
    mask = torch.tensor([[True, True], [True, False]])
    return logp_s, logp_t, mask


def test_sampled_token_loss_value_and_gradient_by_hand():
    logp_s, logp_t, mask = _two_sequences()
    loss = sampled_token_loss(logp_s, logp_t, mask)
    # per-sequence token mean, then batch mean; A = (ln 1.6, 0) and (ln 0.4)
    assert loss.item() == pytest.approx(.5 * ((-ln(1.6) * ln(.5)) / 2 + (-ln(.4) * ln(.5))), abs=1e-6)
    loss.backward()
    expected = torch.tensor([[-ln(1.6) / 4, 0.], [-ln(.4) / 2, 0.]])
    assert torch.allclose(logp_s.grad, expected, atol=1e-6)


def test_sampled_token_loss_teacher_gets_no_gradient():
    logp_s, logp_t, mask = _two_sequences()
    logp_t.requires_grad_()
    sampled_token_loss(logp_s, logp_t, mask).backward()
    assert logp_t.grad is None


def test_lemma_b1_expected_sampled_gradient_is_reverse_kl_gradient():
    # exact expectation over a 3-token vocabulary: sum_v p_s(v) grad[-A(v) log p_s(v)] == grad KL(s || t)
    z = torch.tensor([1.0, -0.5, 0.3], dtype=torch.float64, requires_grad=True)
    lt = P(.2, .5, .3)
    g_rev, = torch.autograd.grad(reverse_kl(z.log_softmax(-1), lt), z)
    p = z.detach().softmax(-1)
    one = torch.ones(1, 1, dtype=torch.bool)
    g = sum(p[v] * torch.autograd.grad(sampled_token_loss(z.log_softmax(-1)[v].view(1, 1), lt[v].view(1, 1), one), z)[0]
            for v in range(3))
    assert torch.allclose(g.to(g_rev.dtype), g_rev, atol=1e-6)
    g_fwd, = torch.autograd.grad(forward_kl(z.log_softmax(-1), lt), z)
    assert (g_fwd - g_rev).abs().max() > 1e-2


def test_centering_and_clipping():
    lt, ls = torch.tensor([[0., 0., 0., 5.]]), torch.tensor([[1., -2., 3., 0.]])    # A = -1, 2, -3 | masked
    m = torch.tensor([[True, True, True, False]])
    assert masked_advantage(lt, ls, m).tolist() == [[-1., 2., -3., 0.]]
    assert torch.allclose(masked_advantage(lt, ls, m, center=True), torch.tensor([[-1 / 3, 8 / 3, -7 / 3, 0.]]))
    assert masked_advantage(lt, ls, m, clip=2.0).tolist() == [[-1., 2., -2., 0.]]
    with pytest.raises(ValueError, match="clip"):
        masked_advantage(lt, ls, m, clip=0.0)


def test_centering_gives_zero_for_a_uniform_signal():
    ls = torch.tensor([[ln(.5), ln(.5), ln(.5)]], requires_grad=True)
    lt = ls.detach() - 1.0                                # A = -1 everywhere: the follow-up rejects y uniformly
    m = torch.ones(1, 3, dtype=torch.bool)
    assert sampled_token_loss(ls, lt, m, center=True).item() == 0.0
    assert sampled_token_loss(ls, lt, m).item() != 0.0


def test_ignore_first_k():
    logp_s, logp_t, mask = _two_sequences()
    assert drop_first_k(mask, 1).tolist() == [[False, True], [False, False]]
    # k = 1 leaves token 2 of sequence 1 (A = 0) and nothing of sequence 2, which leaves the mean
    assert sampled_token_loss(logp_s, logp_t, mask, ignore_first_k=1).item() == 0.0
    with pytest.raises(AllMaskedError, match="ignore_first_k"):
        sampled_token_loss(logp_s, logp_t, mask, ignore_first_k=2)


def test_reductions():
    v = torch.tensor([[1., 3., 99.], [10., 99., 99.]])
    m = torch.tensor([[True, True, False], [True, False, False]])
    assert reduce_tokens(v, m).item() == 6.0
    assert reduce_tokens(v, m, "none").tolist() == [2.0, 10.0]
    assert reduce_tokens(v, m, "seq_sum").item() == 12.0
    with pytest.raises(AllMaskedError):
        reduce_tokens(v, torch.zeros_like(m))
    # the paper's token sum (Eqs. 2, 4, 8): per-sequence sums 4 and 10, then their mean
    assert reduce_tokens(v, m, "none", length_norm=False).tolist() == [4.0, 10.0]
    assert reduce_tokens(v, m, length_norm=False).item() == 7.0


def test_anchor_kl_by_hand():
    """The anchor the trainer adds, beta * chunked_distill_loss(student, reference): KL(student || reference) by hand, no
    gradient into the reference, zero against an identical reference (logits as the states: an identity head)."""
    zs, zr = P(.5, .5).float().view(1, 1, 2).requires_grad_(True), P(.8, .2).float().view(1, 1, 2).requires_grad_(True)
    one = torch.ones(1, 1, dtype=torch.bool)
    kl = chunked_distill_loss(zs, zr, torch.nn.Identity(), one)
    assert kl.item() == pytest.approx(math.log(1.25), abs=1e-6)
    kl.backward()
    assert zr.grad is None and zs.grad.abs().sum() > 0
    assert chunked_distill_loss(zs, zs, torch.nn.Identity(), one).item() == pytest.approx(0.0, abs=1e-7)


def test_sft_loss_by_hand():
    from hindsight_ref.losses import sft_loss
    lp = torch.tensor([[math.log(.5), math.log(.25)], [math.log(.5), 0.]], requires_grad=True)
    m = torch.tensor([[True, True], [True, False]])
    v = sft_loss(lp, m)
    assert v.item() == pytest.approx(0.5 * ((math.log(2) + math.log(4)) / 2 + math.log(2)), abs=1e-6)
    v.backward()
    assert torch.allclose(lp.grad, torch.tensor([[-0.25, -0.25], [-0.5, 0.]]))
    assert sft_loss(lp.detach(), m, length_norm=False).item() == pytest.approx(0.5 * (math.log(8) + math.log(2)), abs=1e-6)


def test_distill_loss_reverse_kl_two_positions():
    s3, t3 = P(.5, .3, .2).float(), P(.2, .5, .3).float()
    zs = torch.stack([s3, t3]).unsqueeze(0)
    zt = torch.stack([t3, s3]).unsqueeze(0)
    v = distill_loss(zs, zt, torch.ones(1, 2, dtype=torch.bool))
    assert v.item() == pytest.approx((reverse_kl(s3, t3) + reverse_kl(t3, s3)).item() / 2, abs=1e-6)


# ---- teachers ------------------------------------------------------------------------------------------------
def test_ema_convention():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    ema_update_(a, b, 0.05)                               # teacher <- 0.95 teacher + 0.05 student
    assert torch.allclose(a.weight, 0.95 * wa + 0.05 * wb, atol=1e-7)
    ema_update_(a, b, 0.0)
    assert torch.allclose(a.weight, 0.95 * wa + 0.05 * wb, atol=1e-7)
    assert torch.equal(ema_update_(a, b, 1.0).weight, wb)


# ---- chunked == naive on a real (tiny) model ------------------------------------------------------------------
@pytest.fixture(scope="module")
def batch_and_model(tiny):
    from hindsight_ref.contexts import collate, encode_interactions
    from hindsight_ref.data import fixture_interactions
    model, tok = tiny
    model = model.float()
    encs = encode_interactions(tok, fixture_interactions()[:3])
    return collate(encs, tok.pad_token_id), model


def _naive_logp_full(model, ids, am, L, T):
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    return model(input_ids=ids, attention_mask=am, position_ids=pos).logits[:, L - 1:L - 1 + T].float().log_softmax(-1)


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_grads_close(g_ref, g, rel=1e-4):
    "float32 gradients summed over a 49k vocabulary in another order agree to ~1e-5 of the largest entry; allow 1e-4."
    assert g_ref.keys() == g.keys()
    scale = max(v.abs().max().item() for v in g_ref.values())
    assert max((g_ref[n] - g[n]).abs().max().item() for n in g_ref) < rel * scale


def _assert_value_close(a, b, rel=1e-5):
    assert abs(a - b) < rel * max(1.0, abs(a))


def test_sampled_token_loss_chunked_equals_naive(batch_and_model):
    "The paper's loss from signal.completion_logprobs (chunked, recomputed) == from full [B, T, V] logits."
    from hindsight_ref.signal import completion_logprobs
    b, model = batch_and_model
    T = b["completion_ids"].shape[1]
    S = (b["student_input_ids"], b["student_attention_mask"]); Tt = (b["teacher_input_ids"], b["teacher_attention_mask"])
    Ls, Lt, m = b["student_context_len"], b["teacher_context_len"], b["loss_mask"]
    model.zero_grad()
    with torch.no_grad():
        lt = _naive_logp_full(model, *Tt, Lt, T).gather(-1, b["completion_ids"][..., None])[..., 0]
    ls = _naive_logp_full(model, *S, Ls, T).gather(-1, b["completion_ids"][..., None])[..., 0]
    naive = sampled_token_loss(ls, lt, m, center=True, clip=2.0)
    naive.backward(); g_naive = _grads(model)
    model.zero_grad()
    with torch.no_grad():
        lt_c = completion_logprobs(model, *Tt, b["completion_ids"], Lt, chunk_size=5)
    ls_c = completion_logprobs(model, *S, b["completion_ids"], Ls, chunk_size=5)
    chunked = sampled_token_loss(ls_c, lt_c, m, center=True, clip=2.0)
    chunked.backward(); g_chunked = _grads(model)
    _assert_value_close(naive.item(), chunked.item())
    _assert_grads_close(g_naive, g_chunked)


@pytest.mark.parametrize("kw", [dict(alpha=1.0), dict(alpha=0.0), dict(alpha=0.5), dict(alpha=1.0, topk=10),
                                dict(alpha=0.3, topk=4, add_tail=False), dict(alpha=1.0, ignore_first_k=2),
                                dict(alpha=1.0, length_norm=False)])
def test_chunked_distill_equals_naive(batch_and_model, kw):
    from hindsight_ref.signal import completion_hidden
    b, model = batch_and_model
    T = b["completion_ids"].shape[1]
    S = (b["student_input_ids"], b["student_attention_mask"]); Tt = (b["teacher_input_ids"], b["teacher_attention_mask"])
    Ls, Lt, m = b["student_context_len"], b["teacher_context_len"], b["loss_mask"]
    # sharpen the output so the distributions are far from uniform and the gradients are not tiny
    head = lambda h: 20.0 * model.get_output_embeddings()(h)
    model.zero_grad()
    pos = lambda am: (am.cumsum(-1) - 1).clamp(min=0)
    hs_full = model.get_decoder()(input_ids=S[0], attention_mask=S[1], position_ids=pos(S[1])).last_hidden_state
    with torch.no_grad():
        ht_full = model.get_decoder()(input_ids=Tt[0], attention_mask=Tt[1], position_ids=pos(Tt[1])).last_hidden_state
    naive = distill_loss(head(hs_full[:, Ls - 1:Ls - 1 + T]), head(ht_full[:, Lt - 1:Lt - 1 + T]), m, **kw)
    naive.backward(); g_naive = _grads(model)
    model.zero_grad()
    h_s = completion_hidden(model, *S, Ls, T)
    with torch.no_grad(): h_t = completion_hidden(model, *Tt, Lt, T)
    chunked = chunked_distill_loss(h_s, h_t, head, m, chunk_size=7, **kw)
    chunked.backward(); g_chunked = _grads(model)
    assert naive.item() > 1e-5 and max(g.abs().max().item() for g in g_naive.values()) > 1e-4   # not trivially zero
    _assert_value_close(naive.item(), chunked.item())
    _assert_grads_close(g_naive, g_chunked)


def test_chunked_reductions_match(batch_and_model):
    from hindsight_ref.signal import completion_hidden
    b, model = batch_and_model
    T = b["completion_ids"].shape[1]
    with torch.no_grad():
        h_s = completion_hidden(model, b["student_input_ids"], b["student_attention_mask"], b["student_context_len"], T)
        h_t = completion_hidden(model, b["teacher_input_ids"], b["teacher_attention_mask"], b["teacher_context_len"], T)
        head = model.get_output_embeddings()
        per = chunked_distill_loss(h_s, h_t, head, b["loss_mask"], reduction="none")
        mean = chunked_distill_loss(h_s, h_t, head, b["loss_mask"])
        naive = distill_loss(head(h_s), head(h_t), b["loss_mask"], reduction="none")
    assert torch.allclose(per, naive, rtol=1e-5, atol=1e-6) and mean.item() == pytest.approx(per.mean().item(), rel=1e-6)
