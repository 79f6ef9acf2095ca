"The win-rate protocol (both orders, ties, standard errors) and the no-regression checks (KL to base, perplexity, IFEval-style)."
import copy
import math

import numpy as np
import pytest
import torch

from hindsight_ref.contexts import collate, encode_interactions
from hindsight_ref.data import fixture_interactions
from hindsight_ref.signal import completion_kl
from hindsight_ref.evaluation import (IF_EXAMPLES, NO_REGRESSION_RULES, WinRate, check_instructions, compare_checks,
                                      decide, heldout_texts, ifeval_scores, instruction_checker, instruction_items, kl_to_base,
                                      perplexity, run_checks, two_order, win_rate)
from hindsight_ref.simulators import RewardJudge


def test_decide_needs_both_orders_to_agree():
    assert decide("A", "B") == 1 and decide("B", "A") == -1
    for pair in [("A", "A"), ("B", "B"), ("C", "C"), ("A", "C"), ("C", "B"), (None, "B"), ("A", None)]: assert decide(*pair) == 0


class Calls:
    "A judge that records its calls and answers from a table keyed by (a, b)."
    def __init__(self, table): self.table, self.calls = table, []
    def __call__(self, p, a, b): self.calls.append((a, b)); return self.table[(a, b)]


def test_two_order_swaps_positions():
    j = Calls({("y", "r"): "A", ("r", "y"): "B"})
    assert two_order(j, "p", "y", "r") == 1 and j.calls == [("y", "r"), ("r", "y")]
    assert two_order(Calls({("y", "r"): "A", ("r", "y"): "A"}), "p", "y", "r") == 0    # position bias: no decision


def test_win_rate_counts_ties_and_unparseable_and_batches():
    table = {("w", "r"): "A", ("r", "w"): "B", ("l", "r"): "B", ("r", "l"): "A", ("t", "r"): "C", ("r", "t"): "C",
             ("u", "r"): None, ("r", "u"): "A", ("b", "r"): "A", ("r", "b"): "A"}
    wr = win_rate(Calls(table), ["p"] * 6, ["w", "w", "l", "t", "u", "b"], ["r"] * 6)
    assert (wr.wins, wr.losses, wr.ties, wr.unparseable) == (2, 1, 3, 1) and wr.rate == pytest.approx(2 / 3)

    class Batched:
        def __init__(self): self.batches = []
        def many(self, ps, as_, bs): self.batches.append(len(ps)); return ["A" if a == "w" else "B" for a in as_]
    j = Batched()
    assert win_rate(j, ["p"] * 3, ["w"] * 3, ["r"] * 3).wins == 3 and j.batches == [6]   # one batch of both orders
    with pytest.raises(ValueError, match="same length"): win_rate(j, ["p"], ["w", "w"], ["r"])


def test_rule_judge_with_first_position_bias_gives_ties_not_wins():
    judge = RewardJudge(lambda p, y: -len(y), tie="A")
    assert win_rate(judge, ["p"] * 4, ["aa", "bb", "c", "dddd"], ["xx", "yy", "zz", "e"]).as_dict()["ties"] == 2


def test_rate_and_se_edge_cases():
    assert math.isnan(WinRate(0, 0, 3).rate) and math.isnan(WinRate(0, 0, 0).bootstrap_se())
    assert WinRate(5, 0, 0).se == 0 and WinRate(5, 0, 0).bootstrap_se() == 0
    assert "unparseable" in repr(WinRate(1, 1, 1, 1))


@pytest.mark.parametrize("w,l,t", [(3200, 800, 0), (1500, 1500, 0), (2400, 600, 1000), (900, 100, 3000)])
def test_bootstrap_se_matches_the_closed_form(w, l, t):
    r = WinRate(w, l, t)
    # closed form sqrt(p(1-p)/(W+L)); with no ties the binomial sqrt(p(1-p)/n). Bootstrap SD from B resamples has relative
    # Monte Carlo error ~ 1/sqrt(2B); allow 4 of those plus an O(1/n) bias.
    assert abs(r.bootstrap_se(n_boot=10_000, seed=1) / r.se - 1) < 4 / math.sqrt(2 * 10_000) + 0.01
    if t == 0: assert r.se == pytest.approx(math.sqrt(r.rate * (1 - r.rate) / (w + l)))


def test_analytic_se_matches_the_sampling_spread():
    rng = np.random.default_rng(0); n, p = 256, 0.8
    c = rng.multinomial(n, [0.75 * p, 0.75 * (1 - p), 0.25], size=20_000)
    spread = np.std(c[:, 0] / (c[:, 0] + c[:, 1]))
    assert WinRate(int(0.75 * p * n), int(0.75 * (1 - p) * n), n // 4).se == pytest.approx(spread, rel=0.05)


# ---- no-regression checks ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def held():
    return fixture_interactions()[:3]


def test_kl_to_base_zero_for_itself_and_exact_in_float64(tiny, held):
    model, tok = tiny
    assert kl_to_base(model, model, tok, held) == pytest.approx(0.0, abs=1e-7)
    moved = copy.deepcopy(model)
    with torch.no_grad(): moved.get_output_embeddings().weight.add_(0.02 * torch.randn_like(moved.get_output_embeddings().weight))
    b = collate(encode_interactions(tok, held), tok.pad_token_id)
    got = completion_kl(moved, b, model, "student", "student", chunk_size=7)   # chunking must not change the value
    m64, b64 = copy.deepcopy(moved).double(), copy.deepcopy(model).double()
    L, T = b["student_context_len"], b["completion_ids"].shape[1]
    lp, lq = (m(input_ids=b["student_input_ids"], attention_mask=b["student_attention_mask"],
                position_ids=b["student_position_ids"]).logits[:, L - 1:L - 1 + T].log_softmax(-1) for m in (m64, b64))
    want = (lp.exp() * (lp - lq)).sum(-1) * b["completion_mask"]
    assert torch.allclose(got.double(), want, atol=1e-4 * want.abs().max().item(), rtol=0)
    assert kl_to_base(moved, model, tok, held) == pytest.approx((want.sum() / b["completion_mask"].sum()).item(), rel=1e-3)
    with pytest.raises(ValueError, match="at least one"): kl_to_base(model, model, tok, [])


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny):
    model, tok = tiny
    uniform = copy.deepcopy(model)
    with torch.no_grad():
        for p in uniform.parameters(): p.zero_()     # zero embeddings and head: logits 0 everywhere
    assert perplexity(uniform, tok, heldout_texts()[:2]) == pytest.approx(len(tok) if uniform.config.vocab_size == len(tok)
                                                                        else uniform.config.vocab_size, rel=1e-5)
    assert len(heldout_texts()) == 10
    with pytest.raises(ValueError, match="at least 2"): perplexity(model, tok, ["a"])


@pytest.mark.parametrize("iid", sorted(IF_EXAMPLES))
def test_each_instruction_checker_passes_and_fails(iid):
    kw, good, bad = IF_EXAMPLES[iid]
    c = instruction_checker(iid, kw)
    assert c.check_following(good) and not c.check_following(bad)


def test_more_checker_cases():
    words = instruction_checker("length_constraints:number_words", {"num_words": 3, "relation": "at least"})
    assert words.check_following("one two three") and not words.check_following("one two")
    sent = instruction_checker("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"})
    assert sent.check_following("It rains. It pours!") and not sent.check_following("It rains")
    js = instruction_checker("detectable_format:json_format")
    assert js.check_following('{"a": [1, 2]}') and not js.check_following("{'a': 1}")
    with pytest.raises(KeyError, match="Unknown instruction"): instruction_checker("format:nothing")


def test_every_shipped_prompt_is_checkable_and_loose_is_looser():
    items = instruction_items()
    assert len(items) >= 20 and {i for it in items for i in it["instruction_id_list"]} <= set(IF_EXAMPLES)
    item = {"prompt": "p", "instruction_id_list": ["change_case:english_lowercase", "startend:quotation"], "kwargs": [{}, {}]}
    r = 'Here you go:\n"a lowercase limerick"'
    assert check_instructions(r, item) == [False, False] and check_instructions(r, item, loose=True) == [True, True]
    s = ifeval_scores([r, '"this is a short answer written in plain english"'], [item, item])
    assert s["prompt_strict"] == 0.5 and s["prompt_loose"] == 1.0 and s["instruction_strict"] == 0.5


def test_run_and_compare_checks():
    before = run_checks("m0", {"kl_to_base": lambda m: 0.0, "perplexity": lambda m: 10.0, "ifeval": lambda m: {"prompt_loose": 0.5}})
    assert before == {"kl_to_base": 0.0, "perplexity": 10.0, "ifeval.prompt_loose": 0.5}
    after = {"kl_to_base": 0.05, "perplexity": 10.8, "ifeval.prompt_loose": 0.47, "drift": 0.3}
    rows = {r["name"]: r for r in compare_checks(before, after, {**NO_REGRESSION_RULES, "drift": ("lower", 0.1)})}
    assert rows["kl_to_base"]["ok"] and not rows["perplexity"]["ok"] and rows["ifeval.prompt_loose"]["ok"]
    assert rows["drift"]["ok"] is False and math.isnan(rows["drift"]["before"]) is True
    with pytest.raises(ValueError, match="direction"): compare_checks(before, after, {"perplexity": ("down", 1)})


def test_one_win_curve_plot_reads_protocol_records_and_toy_histories():
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from hindsight_ref.evaluation import plot_win_curves
    recs = [dict(step=s, interactions=8 * s, persona="p", rate=r, se=0.05, bootstrap_se=0.06) for s, r in ((3, 0.7), (0, 0.5))]
    recs += [dict(step="oracle", persona="p", rate=0.9, se=0.02), dict(step=0, interactions=0, persona="q", rate=0.4, se=0.1)]
    ax = plot_win_curves(recs, boundaries=[12, 20])
    assert [list(l.get_ydata()) for l in ax.lines if l.get_label() in ("p", "q")] == [[50, 70], [40]]   # sorted by interactions
    assert [l.get_label() for l in ax.lines].count("p: in-context oracle") == 1
    assert sum(list(l.get_xdata()) in ([12, 12], [20, 20]) for l in ax.lines) == 2
    band = ax.collections[0].get_paths()[0].vertices[:, 1]                      # the bootstrap se (6 points), not the analytic one
    assert np.isclose(band.min(), 44) and np.isclose(band.max(), 76)
    fig, ax2 = plt.subplots()
    assert plot_win_curves({"t": ([{"interactions": 0, "w": 0.5}, {"interactions": 10}], "w")}, {"t": 0.8}, ax=ax2) is ax2
    assert list(ax2.lines[0].get_ydata()) == [50] and not ax2.collections        # a record without the key is skipped; no band
    plt.close("all")
