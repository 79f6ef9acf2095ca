"Tests of hindsight_ref.signal: hand-computed directions and signs, brute-force references, Monte Carlo."
import math

import pytest
import torch
import torch.nn.functional as F

from hindsight_ref.contexts import collate, encode_interactions
from hindsight_ref.data import Interaction
from hindsight_ref.data import control_interactions
from hindsight_ref.models import eval_mode
from hindsight_ref.signal import (Signal, completion_kl, completion_logprobs, hindsight_hidden, hindsight_signal,
                                  interaction_kl, kl_divergence, naive_completion_logprobs, score_batch, separation,
                                  separation_ladder, separation_stats, sequence_advantage, token_advantage)

LN2 = math.log(2)
ITS = [
    Interaction(x=[{"role": "user", "content": "Answer with YES or NO: Is water wet?"}], y="YES, water is wet.",
                o="I said YES or NO only.", meta={"unrelated_followup": "What is 27*4?"}),
    Interaction(x=[{"role": "user", "content": "Should I standardize features before fitting a logistic regression?"}],
                y="Good question! Yes: standardizing puts the coefficients on one scale and helps the optimizer converge.",
                o="Get to the point. Just answer directly without filler.", meta={"unrelated_followup": "Name a fish."}),
    Interaction(x=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                   {"role": "user", "content": "Write a one-line greeting for my team."}],
                y="🎉 Hey team, let's make today awesome! 🚀", o="No emojis please.",
                meta={"unrelated_followup": "What's the weather like on Mars?"}),
]


def reference_logprobs(model, context_ids, completion_ids):
    "Brute force: one sequence, no padding, plain forward, full log_softmax."
    with torch.no_grad(): logits = model(torch.tensor([list(context_ids) + list(completion_ids)])).logits[0].float()
    L = len(context_ids)
    return logits.log_softmax(-1)[L - 1:L - 1 + len(completion_ids)].gather(-1, torch.tensor(completion_ids)[:, None])[:, 0]


# ---------------------------------------------------------------- hand-computed: directions and signs
def test_advantage_sign_and_sequence_sum():
    # teacher p = 1/8, 1/2 ; student p = 1/2, 1/4  ->  A = log(1/4) = -2 bits, log 2 = +1 bit
    lt, ls = torch.tensor([1 / 8, 1 / 2]).log(), torch.tensor([1 / 2, 1 / 4]).log()
    A = token_advantage(lt, ls)
    assert A[0] < 0 < A[1]                                  # less likely in hindsight -> negative
    torch.testing.assert_close(A, torch.tensor([-2 * LN2, LN2]))
    torch.testing.assert_close(sequence_advantage(A), torch.tensor(-LN2))      # log (1/16) / (1/8)
    torch.testing.assert_close(sequence_advantage(A, torch.tensor([False, True])), torch.tensor(LN2))


def test_advantage_is_detached():
    ls = torch.tensor([0.2, 0.5]).log().requires_grad_(True)
    assert not token_advantage(torch.tensor([0.3, 0.3]).log(), ls).requires_grad


def test_kl_direction_two_tokens():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])
    # KL(p||q) = 1/2 log 2 + 1/2 log(2/3) = 0.143841 ; KL(q||p) = 1/4 log(1/2) + 3/4 log(3/2) = 0.130812
    assert kl_divergence(p.log(), q.log()).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), abs=1e-6)
    assert kl_divergence(p.log(), q.log()).item() == pytest.approx(0.143841, abs=1e-6)
    assert kl_divergence(q.log(), p.log()).item() == pytest.approx(0.130812, abs=1e-6)


def test_eq2_kl_is_reverse_student_first():
    student, teacher = torch.tensor([0.5, 0.5]).log(), torch.tensor([0.25, 0.75]).log()
    assert kl_divergence(student, teacher).item() == pytest.approx(0.143841, abs=1e-6)       # KL(student || teacher)
    # the classic trap: F.kl_div(input, target) computes KL(target || input)
    assert F.kl_div(teacher, student, log_target=True, reduction="sum").item() == pytest.approx(0.143841, abs=1e-6)


def test_eq2_kl_matches_minus_expected_advantage():
    zs = torch.tensor([1.0, 0.0, -1.0], requires_grad=True)
    zt = torch.tensor([0.0, 2.0, 0.0], requires_grad=True)
    kl = kl_divergence(zs.log_softmax(-1), zt.log_softmax(-1).detach())      # Eq. 2: the teacher is a constant
    kl.backward()
    assert zt.grad is None and zs.grad is not None
    ls, lt = zs.log_softmax(-1).detach(), zt.log_softmax(-1).detach()
    assert kl.item() == pytest.approx(-(ls.exp() * (lt - ls)).sum().item(), abs=1e-6)   # KL = -E_student[A(c)]


def test_eq3_gradient_three_tokens_by_hand():
    # student uniform over 3, teacher (1/2, 1/4, 1/4): dKL/dz_c = p_c (log p_c/q_c - KL)
    z = torch.zeros(3, requires_grad=True)
    q = torch.tensor([0.5, 0.25, 0.25])
    kl_divergence(z.log_softmax(-1), q.log()).backward()
    r = torch.tensor([math.log((1 / 3) / 0.5), math.log((1 / 3) / 0.25), math.log((1 / 3) / 0.25)])
    kl = r.mean()
    torch.testing.assert_close(z.grad, (r - kl) / 3)
    assert z.grad[0] < 0 < z.grad[1]     # gradient descent raises the token the teacher prefers


# ---------------------------------------------------------------- Lemma B.1
def test_lemma_b1_exact_on_enumerable_bigram_model():
    V, T = 3, 3
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(V + 1, V, generator=g).requires_grad_(True)
    theta_t = torch.randn(V + 1, V, generator=g)
    ys = torch.cartesian_prod(*[torch.arange(V)] * T)
    prev = torch.cat([torch.full((len(ys), 1), V), ys[:, :-1]], 1)
    ls, lt = theta[prev].log_softmax(-1), theta_t[prev].log_softmax(-1)
    lp = ls.gather(-1, ys[..., None])[..., 0]
    w = lp.sum(-1).exp().detach()                                          # pi(y), prefix distribution held fixed
    A = token_advantage(lt.gather(-1, ys[..., None])[..., 0], lp)
    g_eq2 = torch.autograd.grad((w * kl_divergence(ls, lt).sum(-1)).sum(), theta, retain_graph=True)[0]
    g_one = torch.autograd.grad((w * -(A * lp).sum(-1)).sum(), theta)[0]
    torch.testing.assert_close(g_one, g_eq2, atol=1e-5, rtol=1e-5)


def test_lemma_b1_monte_carlo_tiny_model(tiny):
    model, tok = tiny
    e = encode_interactions(tok, ITS[:1])[0]
    s_ids, t_ids = torch.tensor([e.student_ids]), torch.tensor([e.teacher_ids])
    T, Ls, Lt = len(e.completion_ids), len(e.student_context_ids), len(e.teacher_context_ids)
    params = list(model.parameters())
    flat = lambda loss: torch.cat([x.flatten() for x in torch.autograd.grad(loss, params)]).double()
    student = lambda: model(s_ids).logits[0, Ls - 1:Ls - 1 + T].float().log_softmax(-1)
    with torch.no_grad(): lt = model(t_ids).logits[0, Lt - 1:Lt - 1 + T].float().log_softmax(-1)
    g_exact = flat(kl_divergence(student(), lt).sum())
    with torch.no_grad(): ls = student()
    n = 8192
    c = torch.multinomial(ls.exp(), n, replacement=True, generator=torch.Generator().manual_seed(0))
    freq = torch.zeros_like(ls).scatter_add_(1, c, torch.ones(c.shape)) / n
    g_hat = flat(-(freq * (lt - ls) * student()).sum())
    assert F.cosine_similarity(g_hat, g_exact, dim=0).item() >= 0.99


# ---------------------------------------------------------------- completion_logprobs vs brute force
@pytest.fixture(scope="module")
def batch(tok):
    encs = encode_interactions(tok, ITS)
    return encs, collate(encs, pad_token_id=tok.pad_token_id)


@pytest.mark.parametrize("chunk_size", [1, 3, 256])
def test_batched_equals_one_at_a_time(tiny, batch, chunk_size):
    model, _ = tiny
    encs, b = batch
    assert len({len(e.completion_ids) for e in encs}) == 3 and len({len(e.student_context_ids) for e in encs}) >= 2  # padding on both sides
    for side in ("student", "teacher"):
        with torch.no_grad():
            lp = completion_logprobs(model, b[f"{side}_input_ids"], b[f"{side}_attention_mask"], b["completion_ids"],
                                     b[f"{side}_context_len"], chunk_size=chunk_size)
        for k, e in enumerate(encs):
            n = len(e.completion_ids)
            ref = reference_logprobs(model, getattr(e, f"{side}_context_ids"), e.completion_ids)
            assert (lp[k, :n] - ref).abs().max().item() < 1e-4
            assert (lp[k, n:] == 0).all()


def test_extra_padding_changes_nothing(tiny, tok):
    "One interaction, unpadded vs padded by 5 columns on the left and 4 on the right."
    model, _ = tiny
    e = encode_interactions(tok, ITS[:1])[0]
    ctx, comp = torch.tensor(e.student_context_ids), torch.tensor(e.completion_ids)
    pad = tok.pad_token_id
    ids0 = torch.cat([ctx, comp])[None]
    ids1 = torch.cat([torch.full((5,), pad), ctx, comp, torch.full((4,), pad)])[None]
    att1 = torch.cat([torch.zeros(5), torch.ones(len(ctx) + len(comp)), torch.zeros(4)]).long()[None]
    comp1 = torch.cat([comp, torch.full((4,), pad)])[None]
    with torch.no_grad():
        a = completion_logprobs(model, ids0, torch.ones_like(ids0), comp[None], len(ctx))
        b = completion_logprobs(model, ids1, att1, comp1, len(ctx) + 5)
    assert (a[0] - b[0, :len(comp)]).abs().max().item() < 1e-4 and (b[0, len(comp):] == 0).all()
    assert (a[0] - reference_logprobs(model, e.student_context_ids, e.completion_ids)).abs().max().item() < 1e-4


def test_chunked_matches_naive_value_and_gradient(tiny, batch):
    model, _ = tiny
    _, b = batch
    args = (b["student_input_ids"], b["student_attention_mask"], b["completion_ids"], b["student_context_len"])
    w = torch.randn(b["completion_ids"].shape, generator=torch.Generator().manual_seed(0))
    grads = []
    for fn in (lambda *a: completion_logprobs(model, *a, chunk_size=4), lambda *a: naive_completion_logprobs(model, *a)):
        model.zero_grad()
        v = fn(*args)
        (v * w).sum().backward()
        grads.append((v.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    model.zero_grad()
    # float32 over a 49k vocabulary summed in another order: relative to the largest entry (a logic error would be O(1))
    assert (grads[0][0] - grads[1][0]).abs().max().item() < 1e-5 * max(1.0, grads[1][0].abs().max().item())
    assert (grads[0][1] - grads[1][1]).abs().max().item() < 1e-4 * grads[1][1].abs().max().item()


def test_layout_errors_are_clear(tiny, batch):
    model, _ = tiny
    _, b = batch
    with pytest.raises(ValueError, match="context_len"):
        completion_logprobs(model, b["student_input_ids"], b["student_attention_mask"], b["completion_ids"],
                            b["student_context_len"] + 1)
    with pytest.raises(ValueError, match="completion is not where context_len says"):
        completion_logprobs(model, b["student_input_ids"], b["student_attention_mask"], b["completion_ids"].roll(1, 1),
                            b["student_context_len"])


# ---------------------------------------------------------------- score_batch
def test_score_batch_grads_masks_and_reference(tiny, batch):
    model, _ = tiny
    encs, b = batch
    out = score_batch(model, b)
    assert out["logp_student"].requires_grad and not out["logp_teacher"].requires_grad and not out["advantage"].requires_grad
    for k in out: assert (out[k][~b["completion_mask"]] == 0).all()
    for k, e in enumerate(encs):
        n = len(e.completion_ids)
        ref = reference_logprobs(model, e.teacher_context_ids, e.completion_ids) - reference_logprobs(model, e.student_context_ids, e.completion_ids)
        assert (out["advantage"][k, :n] - ref).abs().max().item() < 1e-4
    out["logp_student"].sum().backward()        # the teacher pass (no grad) does not break autograd
    model.zero_grad()


def test_hindsight_hidden_is_both_passes(tiny, batch):
    "The student's states carry the gradient, the teacher's (live model or a given copy) do not; a side of None is skipped."
    import copy
    model, _ = tiny
    _, b = batch
    h_s, h_t = hindsight_hidden(model, b)
    assert h_s.requires_grad and not h_t.requires_grad and h_s.shape == h_t.shape
    other = copy.deepcopy(model)
    with torch.no_grad(): other.model.embed_tokens.weight.mul_(2)
    _, h_o = hindsight_hidden(model, b, other)
    assert not torch.allclose(h_o, h_t) and hindsight_hidden(model, b, sides=(None, "teacher"))[0] is None
    torch.testing.assert_close(hindsight_hidden(model, b, sides=("student", "student"))[1], h_s.detach())


def test_dropout_off_and_mode_restored(tok):
    from hindsight_ref.models import tiny_model
    model, _ = tiny_model(tokenizer=tok)
    for layer in model.model.layers: layer.self_attn.attention_dropout = 0.5
    encs = encode_interactions(tok, ITS[:2])
    b = collate(encs, pad_token_id=tok.pad_token_id)
    ref = score_batch(model, b)["advantage"]
    model.train()
    for _ in range(2):
        torch.testing.assert_close(score_batch(model, b)["advantage"], ref)   # deterministic: dropout was off
    assert model.training and all(m.training for m in model.modules())
    model.model.layers[0].eval()                                            # a mixed state is restored as it was
    with eval_mode(model): assert not any(m.training for m in model.modules())
    assert model.training and not model.model.layers[0].training


# ---------------------------------------------------------------- hindsight_signal
def test_hindsight_signal_matches_reference_and_keeps_order(tiny, tok):
    model, _ = tiny
    sigs = hindsight_signal(model, tok, ITS, batch_size=2, top_k=4, progress=False)
    encs = encode_interactions(tok, ITS)
    assert [s.interaction for s in sigs] == ITS
    for s, e in zip(sigs, encs):
        assert isinstance(s, Signal) and s.token_ids == e.completion_ids and len(s.tokens) == len(s)
        assert "".join(s.tokens) == tok.decode(s.token_ids) and "".join(s.tokens[:-1]) == s.interaction.y
        assert s.tokens[-1] == "<|im_end|>"
        ref_s = reference_logprobs(model, e.student_context_ids, e.completion_ids)
        ref_t = reference_logprobs(model, e.teacher_context_ids, e.completion_ids)
        assert (s.logp_student - ref_s).abs().max() < 1e-4 and (s.logp_teacher - ref_t).abs().max() < 1e-4
        torch.testing.assert_close(s.advantage, s.logp_teacher - s.logp_student)
        assert s.sequence_advantage == pytest.approx(float((ref_t - ref_s).sum()), abs=1e-3)
        assert s.mean_abs_advantage == pytest.approx(float((ref_t - ref_s).abs().mean()), abs=1e-4)
        assert s.topk_ids.shape == s.topk_p_student.shape == s.topk_p_teacher.shape == (len(s), 4)
        # ranked by max(p_student, p_teacher), descending
        m = torch.maximum(s.topk_p_student, s.topk_p_teacher)
        assert (m[:, :-1] >= m[:, 1:] - 1e-7).all()
        hit = s.topk_ids == torch.tensor(s.token_ids)[:, None]
        torch.testing.assert_close(s.topk_p_teacher[hit], s.logp_teacher.exp()[hit.any(1)], atol=1e-5, rtol=1e-4)


def test_hindsight_signal_student_reuse_and_bad_input(tiny, tok):
    model, _ = tiny
    base = hindsight_signal(model, tok, ITS, progress=False)
    ctrl = control_interactions(ITS)
    assert [c.o for c in ctrl] == [i.meta["unrelated_followup"] for i in ITS] and [c.y for c in ctrl] == [i.y for i in ITS]
    a = hindsight_signal(model, tok, ctrl, template="offline_code", progress=False, student=base)
    b = hindsight_signal(model, tok, ctrl, template="offline_code", progress=False)
    for x, y in zip(a, b): torch.testing.assert_close(x.advantage, y.advantage, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="different x or y"): hindsight_signal(model, tok, ITS[::-1], student=base, progress=False)
    with pytest.raises(TypeError, match="not an Interaction"): hindsight_signal(model, tok, [{"x": 1}], progress=False)
    assert hindsight_signal(model, tok, [], progress=False) == []


# ---------------------------------------------------------------- the exact per-token KL, and separation
def reference_kl(model, ctx_p, ctx_q, comp, other=None):
    other = model if other is None else other
    def logp(m, ctx):
        with torch.no_grad(): z = m(torch.tensor([list(ctx) + list(comp)])).logits[0].float()
        return z.log_softmax(-1)[len(ctx) - 1:len(ctx) - 1 + len(comp)]
    lp, lq = logp(model, ctx_p), logp(other, ctx_q)
    return (lp.exp() * (lp - lq)).sum(-1)


def test_completion_kl_against_brute_force(tiny, tok):
    from hindsight_ref.models import tiny_model
    model, _ = tiny_model(tokenizer=tok, init_std=0.125, logit_scale=3.0)
    encs = encode_interactions(tok, ITS)
    kls = interaction_kl(model, encs, tok.pad_token_id, batch_size=2)                 # padded, in two batches
    for e, k in zip(encs, kls):
        torch.testing.assert_close(k, reference_kl(model, e.student_context_ids, e.teacher_context_ids, e.completion_ids),
                                   rtol=1e-4, atol=1e-5)
        assert (k > 0).all()
    b = collate(encs, tok.pad_token_id)
    same = completion_kl(model, b, p_side="student", q_side="student")
    assert same.abs().max().item() < 1e-6 and (completion_kl(model, b)[~b["completion_mask"]] == 0).all()
    other, _ = tiny_model(tokenizer=tok, seed=3, init_std=0.125)
    k2 = interaction_kl(model, encs, tok.pad_token_id, q_model=other, q_side="student")[1]
    torch.testing.assert_close(k2, reference_kl(model, encs[1].student_context_ids, encs[1].student_context_ids,
                                                encs[1].completion_ids, other=other), rtol=1e-4, atol=1e-5)


def _sig(A):
    it = Interaction(x=[{"role": "user", "content": "q"}], y="a b", o="o")
    A = torch.tensor(A)
    return Signal(it, "paper", list(range(len(A))), ["t"] * len(A), torch.zeros(len(A)), A, A)


def test_separation_stats_by_hand():
    st = separation_stats([_sig([-3., 0.]), _sig([1., 1.])], [_sig([0., 0.2]), _sig([2., 2.])])
    assert st["real"] == pytest.approx((1.5 + 1.0) / 2) and st["control"] == pytest.approx((0.1 + 2.0) / 2)
    assert st["ratio"] == pytest.approx(1.25 / 1.05) and st["share"] == 0.5 and st["n"] == 2
    assert st["seq_real"] == pytest.approx((-3 + 2) / 2) and st["seq_control"] == pytest.approx((0.2 + 4) / 2)
    with pytest.raises(ValueError, match="same non-empty"):
        separation_stats([_sig([1.])], [])


def test_separation_of_a_model_with_itself_as_control_is_one(tiny, tok):
    "With the real follow-up as its own control the ratio is exactly 1 and the real one never moves y more."
    model, _ = tiny
    out = separation(model, tok, ITS, ITS, templates=("paper", "turns"))
    assert set(out) == {"paper", "turns"}
    for st in out.values():
        assert st["ratio"] == pytest.approx(1.0) and st["share"] == 0.0 and st["n"] == len(ITS)


def test_separation_ladder_loads_local_models(tiny, tok, tmp_path):
    "The ladder's loading path is the real one (models.load_model), here on a local folder, offline."
    model, _ = tiny
    model.save_pretrained(tmp_path / "tiny"); tok.save_pretrained(tmp_path / "tiny")
    rows = separation_ladder([str(tmp_path / "tiny")], ITS, control_interactions(ITS), progress=False)
    assert rows[0]["model"] == str(tmp_path / "tiny") and rows[0]["n_params"] == sum(p.numel() for p in model.parameters())
    assert rows[0]["paper"]["n"] == len(ITS) and rows[0]["paper"]["ratio"] > 0


def test_smollm2_batched_equals_one_at_a_time():
    "Acceptance 1 on the real model: two fixture interactions of different lengths, both passes."
    from hindsight_ref.data import fixture_interactions
    from hindsight_ref.models import load_model
    model, tok = load_model("smollm2-135m-instruct")
    fx = fixture_interactions()
    its = [fx[0], fx[len(fx) // 2]]
    sigs = hindsight_signal(model, tok, its, batch_size=2, progress=False)
    for s, e in zip(sigs, encode_interactions(tok, its)):
        assert (s.logp_student - reference_logprobs(model, e.student_context_ids, e.completion_ids)).abs().max() < 1e-4
        assert (s.logp_teacher - reference_logprobs(model, e.teacher_context_ids, e.completion_ids)).abs().max() < 1e-4
