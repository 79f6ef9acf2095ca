"Tests of the toy world: style round trips, tokenizer, users, judges and the two-order protocol, and the shipped world model."
import random

import pytest
import torch
from hypothesis import given, settings, strategies as st

from hindsight_ref import toyworld as tw
from hindsight_ref.data import Interaction

styles = st.fixed_dictionaries({a: st.booleans() for a in tw.ATTRS})


@given(style=styles, seed=st.integers(0, 10_000), topic=st.sampled_from(tw.TOPICS), kind=st.sampled_from(["info", "tip"]))
@settings(max_examples=100, deadline=None)
def test_style_round_trip(style, seed, topic, kind):
    rng = random.Random(seed)
    req = tw.Request(kind, topic, tw.REQUESTS[kind][0].format(t=topic))
    assert tw.parse_style(tw.render_response(req, style, rng)) == style


def test_render_needs_every_attribute():
    with pytest.raises(ValueError, match="missing attributes"):
        tw.render_response(tw.Request("info", "tea", "tell me about tea ."), {"emoji": True}, random.Random(0))


@pytest.fixture(scope="module")
def wtok():
    return tw.world_tokenizer()


def test_tokenizer_chat_template_and_round_trip(wtok):
    rng = random.Random(0)
    for _ in range(50):
        conv = tw.world_conversation(rng)
        text = wtok.apply_chat_template(conv, tokenize=False)
        assert text == tw.chatml(conv)
        ids = wtok(text, add_special_tokens=False)["input_ids"]
        assert wtok.unk_token_id not in ids
        assert wtok.decode(wtok(conv[-1]["content"])["input_ids"]) == conv[-1]["content"]
    assert wtok.pad_token_id != wtok.eos_token_id
    assert wtok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True) \
        == tw.chatml([{"role": "user", "content": "hi"}], add_generation_prompt=True)


def test_assistant_labels_cover_assistant_turns_only(wtok):
    conv = [{"role": "user", "content": "tell me about tea ."}, {"role": "assistant", "content": "note that tea are warm ."},
            {"role": "user", "content": "keep it short ."}, {"role": "assistant", "content": "perfect !"}]
    b = tw.world_batch([conv], wtok)
    kept = [wtok.convert_ids_to_tokens(int(i)) for i, l in zip(b["input_ids"][0], b["labels"][0]) if l != -100]
    assert kept == ["note", "that", "tea", "are", "warm", ".", "<|im_end|>", "perfect", "!", "<|im_end|>"]


def _resp(**on):
    return tw.render_response(tw.Request("info", "tea", "tell me about tea ."), {a: on.get(a, False) for a in tw.ATTRS}, random.Random(0))


def test_reward_user_and_judge():
    bad, good = _resp(praise=True, closer=True), _resp()
    assert tw.true_reward("less_filler", bad) == -2 and tw.true_reward("less_filler", good) == 0
    assert tw.true_reward("no_emojis", bad) == 0
    u = tw.SimulatedUser("less_filler", seed=0)
    x = [{"role": "user", "content": "tell me about tea ."}]
    assert u(x, good) in tw.APPROVALS
    o = u(x, bad)
    assert o not in tw.APPROVALS and any(p in o for p in tw.COMPLAINTS[("praise", False)])
    assert any(p in o for p in tw.COMPLAINTS[("closer", False)])
    assert tw.judge("less_filler", "", good, bad) == "A" and tw.judge("less_filler", "", bad, good) == "B"
    assert tw.judge("less_filler", "", good, good) == "A"           # first-position bias on ties
    assert tw.judge("less_filler", "", good, good, tie="C") == "C"


def test_two_order_protocol_cancels_position_bias():
    bad, good = _resp(praise=True), _resp()
    assert tw.two_order("less_filler", "", good, bad) == 1
    assert tw.two_order("less_filler", "", bad, good) == -1
    assert tw.two_order("less_filler", "", good, good) == 0          # A then A: the orders disagree -> tie
    wr = tw.win_rate("less_filler", [None] * 4, [good, good, bad, good], [bad, bad, good, good])
    assert (wr.wins, wr.losses, wr.ties) == (2, 1, 1) and wr.rate == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same length"):
        tw.win_rate("less_filler", [None], [good, bad], [bad])


def test_bad_inputs():
    with pytest.raises(KeyError, match="Unknown persona"): tw.get_persona("grumpy")
    with pytest.raises(ValueError, match="loss must be"): tw.OnlineConfig(loss="forward")
    with pytest.raises(ValueError, match="at least one"): tw.complaint_text({}, random.Random(0))


# The first token of each alternative of every attribute's decision (topic words stand for the plain heading).
DECISION = {"praise": ({"great", "good", "perfect"}, {"sure"}), "markdown": ({"#"}, set(tw.TOPICS)),
            "long": ({"first"}, {"in"}), "casual": ({"yeah"}, {"note"}), "emoji": (set(tw.EMOJIS), {"."}),
            "closer": ({"hope", "let"}, {"<|im_end|>"})}


@given(style=styles, seed=st.integers(0, 10_000), topic=st.sampled_from(tw.TOPICS), kind=st.sampled_from(["info", "tip"]),
       attr=st.sampled_from(tw.ATTRS))
@settings(max_examples=200, deadline=None)
def test_each_attribute_is_decided_at_its_own_token(style, seed, topic, kind, attr):
    "Flipping one attribute leaves every token before its decision unchanged, and the decision token names the attribute's value."
    wtok = tw.world_tokenizer()
    req = tw.Request(kind, topic, tw.REQUESTS[kind][0].format(t=topic))
    ids = {v: wtok.convert_ids_to_tokens(wtok(tw.render_response(req, {**style, attr: v}, random.Random(seed)))["input_ids"]) + ["<|im_end|>"]
           for v in (True, False)}
    i = next(i for i, (a, b) in enumerate(zip(ids[True], ids[False])) if a != b)
    assert ids[True][i] in DECISION[attr][0] and ids[False][i] in DECISION[attr][1]
    for other, (on, off) in DECISION.items():      # no other attribute's decision can be read at this token
        if other != attr:
            assert not {ids[True][i], ids[False][i]} & (on | off), (attr, other, ids[True][i], ids[False][i])


def test_merge_personas():
    m = tw.merge_personas("no_emojis", "less_filler", "direct_plain")
    assert m.wanted() == {"emoji": False, "praise": False, "closer": False, "markdown": False, "long": False}
    assert m.name == "no_emojis+less_filler+direct_plain"
    flip = tw.merge_personas("concise_casual", "detailed_professional")          # a later persona wins a conflict
    assert flip.wanted() == {"long": True, "casual": False}
    bad = tw.render_response(tw.Request("info", "tea", "tell me about tea ."), dict.fromkeys(tw.ATTRS, True), random.Random(0))
    assert tw.true_reward(m, bad) == -5.0


@pytest.fixture(scope="module")
def world():
    return tw.load_world()


def test_world_model_reads_hindsight(world):
    "On the shipped model: a complaint about praise makes the praise token much less likely; an unrelated follow-up does not."
    model, tok = world
    x = [{"role": "user", "content": "tell me about tea ."}]
    y = _resp(praise=True)
    rel = tw.world_signal(model, tok, [Interaction(x, y, "skip the praise .")])[0]
    unr = tw.world_signal(model, tok, [Interaction(x, y, "any tips on chess ?")])[0]
    assert rel["tokens"][0] in ("great", "good", "perfect")
    assert rel["A"][0] < -1.0 and abs(unr["A"][0]) < 0.3
    assert rel["seq_A"] < unr["seq_A"] - 1.0


def test_kl_anchor_needs_base(world):
    model, tok = world
    it = Interaction([{"role": "user", "content": "tell me about tea ."}], _resp(), "perfect , thanks .")
    with pytest.raises(ValueError, match="base model"):
        tw.hindsight_loss(model, tok, [it], tw.OnlineConfig(kl_anchor=0.1))


def test_hindsight_loss_matches_hand_computation(world):
    "The trainer's sampled-token loss equals -(1/|y|) sum_i A_i log p_student(y_i), computed here from two plain forward passes."
    model, tok = world
    it = Interaction([{"role": "user", "content": "tell me about tea ."}], _resp(emoji=True), "no emojis please .")
    loss, _ = tw.hindsight_loss(model, tok, [it], tw.OnlineConfig(kl_anchor=0.0))   # the paper's loss

    def logps(text):
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad(): lp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        return lp.gather(-1, ids[0, 1:, None])[:, 0], ids.shape[1]
    y_ids = tok(it.y, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    T = len(y_ids)
    s_text = tw.chatml(it.x, True) + it.y + "<|im_end|>"
    t_text = tw.chatml([{"role": "user", "content": it.x[0]["content"] + tw.get_template("paper").hindsight_block(it.o)}], True) + it.y + "<|im_end|>"
    ls, _ = logps(s_text); lt, _ = logps(t_text)
    ls, lt = ls[-T:], lt[-T:]
    expected = -((lt - ls) * ls).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-5)


def test_kl_anchor_adds_beta_times_kl_to_the_base(world):
    "Anchored loss = paper loss + beta * KL(student || base); the KL is zero against an identical base and positive against another."
    import copy
    model, tok = world
    its = [Interaction([{"role": "user", "content": "tell me about tea ."}], _resp(praise=True), "skip the praise ."),
           Interaction([{"role": "user", "content": "any tips on chess ?"}], _resp(long=True), "perfect , thanks .")]
    paper, _ = tw.hindsight_loss(model, tok, its, tw.OnlineConfig(kl_anchor=0.0))
    same, st_same = tw.hindsight_loss(model, tok, its, tw.OnlineConfig(kl_anchor=2.0), base=copy.deepcopy(model))
    assert st_same["kl_base"] == pytest.approx(0.0, abs=1e-6) and same.item() == pytest.approx(paper.item(), abs=1e-5)
    other = tw.world_model(tok, hidden=model.config.hidden_size, layers=model.config.num_hidden_layers, seed=7).eval()
    anch, st = tw.hindsight_loss(model, tok, its, tw.OnlineConfig(kl_anchor=2.0), base=other)
    assert st["kl_base"] > 0.1
    assert anch.item() == pytest.approx(paper.item() + 2.0 * st["kl_base"], rel=1e-4)


def test_plot_helpers_draw_from_the_library():
    "The plot helpers work from a plain import (no notebook globals) and draw what they are given."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rates = {a: 0.1 * (i + 1) for i, a in enumerate(tw.ATTRS)}
    comp = {(a, v): 0.9 if v else 0.8 for a in tw.ATTRS for v in (False, True)}
    ax = tw.plot_world_model(rates, comp)
    heights = [[round(float(p.get_height()), 6) for p in bars] for bars in ax.containers]
    assert heights == [[round(rates[a], 6) for a in tw.ATTRS], [0.8] * 6, [0.9] * 6]
    hist = [{"interactions": 0, "w": 0.5}, {"interactions": 50, "w": 0.9}]
    ax = tw.plot_win_curves({"lf": (hist, "w")}, {"lf": 0.95}, flip_at=50)
    assert list(ax.lines[0].get_ydata()) == [50, 90] and any(list(l.get_ydata()) == [95, 95] for l in ax.lines)
    ax = tw.plot_win_vs_drift([dict(variant="v", win=0.9, max_drift=0.05), dict(variant="w", win=0.97, max_drift=0.3)])
    assert [c.get_offsets().tolist() for c in ax.collections[:2]] == [[[0.05, 90.0]], [[0.3, 97.0]]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["v", "w", "meets both targets"]
    plt.close("all")


def test_shipped_checkpoint_matches_the_code(world):
    "The shipped world model was trained with PRETRAIN_DEFAULTS (also pretrain_world's defaults), on today's vocabulary."
    import inspect, json
    meta = json.loads((tw.FIXTURE_DIR / "world.json").read_text())
    assert {k: meta[k] for k in tw.PRETRAIN_DEFAULTS} == tw.PRETRAIN_DEFAULTS
    sig = inspect.signature(tw.pretrain_world)
    assert {k: sig.parameters[k].default for k in tw.PRETRAIN_DEFAULTS} == tw.PRETRAIN_DEFAULTS
    assert world[1].get_vocab() == tw.world_tokenizer().get_vocab()      # a change to the world's words needs a rebuild


def test_pretraining_is_deterministic():
    "Two short pretraining runs with the same settings give bitwise-identical weights (what makes the rebuild reproducible)."
    kw = dict(tw.PRETRAIN_DEFAULTS, steps=4, batch_size=8, bucket=2, verbose=False)
    (m1, _, _), (m2, _, _) = tw.pretrain_world(**kw), tw.pretrain_world(**kw)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    m3 = tw.pretrain_world(**dict(kw, seed=1))[0]
    assert not all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values()))
