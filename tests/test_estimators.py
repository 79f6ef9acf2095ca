"Gradient estimators: closed-form biases, Lemma B.1 by Monte Carlo, the exact reference against finite differences, cost paths."
import math

import pytest
import torch

from hindsight_ref.losses import topk_logprobs, reverse_kl
from hindsight_ref.estimators import (Estimator, default_estimators, logit_gradient, sample_draws, prefix_baseline, gradient_model,
                                      gradient_batch, encode_batch, finite_difference_check, measure_estimators, mc_slope,
                                      estimator_step, peak_memory_mb, teacher_numbers, estimator_study, estimator_table)
from hindsight_ref.signal import batch_hidden

LN2 = math.log(2)


def _three_tokens():
    p, q = torch.tensor([.5, .25, .25], dtype=torch.float64), torch.tensor([.25, .5, .25], dtype=torch.float64)
    return p.log().view(1, 1, 3), q.log().view(1, 1, 3), torch.ones(1, 1, dtype=torch.bool)


def _rel(a, b): return float((a - b).norm() / b.norm())


def test_top1_and_clipping_biases_match_the_closed_form():
    z, lt, m = _three_tokens()
    g = lambda est: logit_gradient(est, z, lt, m).view(3)
    g_star = g(Estimator("full"))
    assert torch.allclose(g_star, LN2 / 16 * torch.tensor([6., -5, -1], dtype=torch.float64), atol=1e-14)
    tail = g(Estimator("t", kind="topk", k=1))                                   # Bernoulli KL: d/dp0 = ln 3
    assert torch.allclose(tail, math.log(3) / 8 * torch.tensor([2., -1, -1], dtype=torch.float64), atol=1e-14)
    assert float(tail @ g_star / (tail.norm() * g_star.norm())) == pytest.approx(18 / math.sqrt(372), abs=1e-12)
    assert _rel(g(Estimator("r", kind="topk", k=1, add_tail=False)), g_star) == 1.0     # one token: no gradient at all
    for c in (0.1, 0.5, LN2 - 1e-9, LN2, 2.0):                                 # |A| = ln 2 on two tokens, 0 on the third
        assert _rel(g(Estimator("c", kind="sampled", clip=c)), g_star) == pytest.approx(max(0.0, 1 - c / LN2), abs=1e-9)


def test_teacher_topk_selects_the_teachers_tokens():
    s3, t3 = torch.tensor([.5, .3, .2]).log(), torch.tensor([.2, .5, .3]).log()
    s, t = topk_logprobs(s3, t3, 1, topk_by="teacher")                          # the teacher's top-1 is token 1
    assert torch.allclose(s.exp(), torch.tensor([.3, .7])) and torch.allclose(t.exp(), torch.tensor([.5, .5]))
    assert reverse_kl(s, t).item() == pytest.approx(.3 * math.log(.3 / .5) + .7 * math.log(.7 / .5), abs=1e-6)
    with pytest.raises(ValueError, match="topk_by"): topk_logprobs(s3, t3, 1, topk_by="both")


def test_centring_shrinks_by_one_over_T_and_the_prefix_baseline_is_unbiased():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64)
    lt = torch.randn(2, 3, 6, generator=gen, dtype=torch.float64).log_softmax(-1)
    m = torch.tensor([[True, True, True], [True, True, False]])                  # T = 3 and T = 2
    full = logit_gradient(Estimator("full"), z, lt, m)
    cent = logit_gradient(Estimator("c", kind="sampled", center=True), z, lt, m)
    assert torch.allclose(cent[0], (1 - 1 / 3) * full[0], atol=1e-14) and torch.allclose(cent[1], (1 - 1 / 2) * full[1], atol=1e-14)
    draws = sample_draws(z, 200_000, gen)
    for est, want in ((Estimator("c", kind="sampled", center=True), cent), (Estimator("b", kind="sampled", baseline="prefix"), full)):
        assert _rel(logit_gradient(est, z, lt, m, draws), want) < 0.03
    assert torch.equal(prefix_baseline(torch.tensor([[2., 4., 9.]]), torch.ones(1, 3, dtype=torch.bool)), torch.tensor([[2., 2., 6.]]))


def test_monte_carlo_mean_converges_to_the_exact_gradient_like_one_over_sqrt_n():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 7, generator=gen, dtype=torch.float64) * 2
    lt = torch.randn(2, 4, 7, generator=gen, dtype=torch.float64).mul(2).log_softmax(-1)
    m = torch.ones(2, 4, dtype=torch.bool)
    full, est = logit_gradient(Estimator("full"), z, lt, m), Estimator("s", kind="sampled")
    assert torch.allclose(logit_gradient(est, z, lt, m), full, atol=1e-14)      # the expectation, exactly (Lemma B.1)
    ns, errs = [4 ** k for k in range(1, 8)], []
    for n in ns:   # average over 8 seeds so that one lucky draw does not decide the slope
        errs.append(sum(_rel(logit_gradient(est, z, lt, m, sample_draws(z, n, torch.Generator().manual_seed(s))), full) for s in range(8)) / 8)
    mc = [dict(estimator="s", n=n, error=e) for n, e in zip(ns, errs)]
    assert -0.6 < mc_slope(mc, "s") < -0.4, errs


@pytest.fixture(scope="module")
def world_batch():
    from hindsight_ref.probe import load_probe_model, world_source
    model, tok = load_probe_model("toyworld")
    src = world_source(12, model=model, tok=tok)
    its = [it for it, c in zip(src.interactions, src.criticised) if c][:4]
    return model, tok, its, encode_batch(tok, its, max_completion_tokens=16)


def test_exact_reference_matches_finite_differences(world_batch):
    model, tok, its, _ = world_batch
    for objective in ("reverse_kl", "forward_kl", "jsd"):
        rows = finite_difference_check(model, encode_batch(tok, its[:2], max_completion_tokens=6), objective)
        assert len(rows) == 11 and max(r["rel_error"] for r in rows) < 1e-6, rows


def test_gradient_model_unties_the_head_and_differentiates_only_the_subset(world_batch):
    model, *_ = world_batch
    m, params = gradient_model(model)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight          # the original is untouched
    assert m.get_output_embeddings().weight is not m.get_input_embeddings().weight
    assert torch.equal(m.get_output_embeddings().weight, model.get_output_embeddings().weight)
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in params.values()} and "lm_head" in params and "final_norm" in params


def test_the_cost_path_computes_the_measured_gradient(world_batch):
    model, tok, its, batch = world_batch
    m, params = gradient_model(model)
    gb = gradient_batch(m, params, batch)
    for est in (Estimator("s", kind="sampled"), Estimator("c", kind="sampled", center=True, clip=1.0)):
        want = gb.gradient(est, batch["completion_ids"][None])[: params["lm_head"].numel()]   # the logged y as the one draw
        head = model.get_output_embeddings()
        with torch.no_grad(): hs, ht = batch_hidden(model, batch, "student"), batch_hidden(model, batch, "teacher")
        head.weight.grad = None
        estimator_step(head, hs.clone().requires_grad_(True), ht, batch, est)
        assert torch.allclose(head.weight.grad.flatten(), want, atol=1e-5)
        head.weight.grad = None
    for est in (Estimator("full"), Estimator("t", kind="topk", k=4, topk_by="teacher"), Estimator("j", objective="jsd", chunked=True)):
        head.weight.grad = None
        estimator_step(head, hs.clone().requires_grad_(True), ht, batch, est)
        assert torch.allclose(head.weight.grad.flatten(), gb.gradient(est)[: params["lm_head"].numel()], atol=1e-5), est.name
    head.weight.grad = None


def test_measurements_on_the_toy_world(world_batch):
    model, tok, its, batch = world_batch
    ests = [e for e in default_estimators(ks=(1, 4)) if e.objective == "reverse_kl"]
    res = measure_estimators(gradient_batch(*gradient_model(model), batch), ests, n_draws=8, mc_ns=(1, 16, 256), progress=False)
    rows = {r["estimator"]: r for r in res["rows"]}
    assert rows["sampled (Eq. 8)"]["rel_norm"] < 1e-5 and rows["sampled (Eq. 8)"]["variance"] > 0
    assert rows["full"]["variance"] == 0 and rows["full"]["rel_norm"] == 0
    assert rows["student top-1 renorm."]["rel_norm"] == 1.0 and 0 < rows["student top-1 + tail"]["tail_mass"] < 1
    assert rows["student top-4 + tail"]["rel_norm"] <= rows["student top-1 + tail"]["rel_norm"]     # more of the support, less bias
    assert 0 < rows["sampled, clipped 1"]["clip_acts"] < 1 and rows["sampled, clipped 1"]["rel_norm"] > 0


def test_study_table_has_every_row_with_its_cost(world_batch):
    model, tok, its, _ = world_batch
    ests = [Estimator("s", kind="sampled"), Estimator("full"), Estimator("t", kind="topk", k=2), Estimator("f", objective="forward_kl")]
    res = estimator_study(model, tok, its[:2], ests, max_completion_tokens=8, n_draws=2, mc_ns=(1, 4), repeats=1, progress=False)
    table = estimator_table(res)
    assert len(table.splitlines()) == 1 + len(ests) and all(r["ms"] > 0 and r["peak_mb"] > 0 for r in res["rows"])
    assert [r["teacher_numbers"] for r in res["rows"]] == [1, res["vocab"], 2, res["vocab"]]


def test_peak_memory_of_a_known_allocation_and_teacher_numbers():
    def fn():
        a = torch.empty(1 << 20); b = torch.empty(2 << 20); del a        # 4 MB and 8 MB live together
        return b
    assert 11.9 <= peak_memory_mb(fn) <= 12.5
    assert teacher_numbers(Estimator("t", kind="topk", k=20, topk_by="teacher"), 100) == 40
    assert teacher_numbers(Estimator("t", kind="topk", k=20), 100) == 20


def test_estimator_arguments_are_checked():
    with pytest.raises(ValueError, match="reverse KL only"): Estimator("x", objective="jsd", kind="sampled")
    with pytest.raises(ValueError, match="k >= 1"): Estimator("x", kind="topk", k=0)
    with pytest.raises(ValueError, match="objective"): Estimator("x", objective="kl")
    with pytest.raises(ValueError, match="one of center"): Estimator("x", kind="sampled", center=True, baseline="prefix")
    with pytest.raises(ValueError, match="chunked"): Estimator("x", kind="topk", k=2, topk_by="teacher", chunked=True)
