"Tests of the toy world: style round trips, tokenizer, users, judges and the two-order protocol, the shipped world model, and its runs through the library's trainer."
import random

import pytest
import torch
from hypothesis import given, settings, strategies as st

from hindsight_ref.data import Interaction, fixture_file
from hindsight_ref.evaluation import plot_win_curves
from hindsight_ref.toyworld import world as w, model as wm, experiments as ex

styles = st.fixed_dictionaries({a: st.booleans() for a in w.ATTRS})


@given(style=styles, seed=st.integers(0, 10_000), topic=st.sampled_from(w.TOPICS), kind=st.sampled_from(["info", "tip"]))
@settings(max_examples=100, deadline=None)
def test_style_round_trip(style, seed, topic, kind):
    rng = random.Random(seed)
    req = w.Request(kind, topic, w.REQUESTS[kind][0].format(t=topic))
    assert w.parse_style(w.render_response(req, style, rng)) == style


def test_the_world_is_pure_python():
    "Importing the world (and the users and judges it builds on) and using its personas and judges loads neither torch nor transformers."
    import subprocess, sys
    code = ("import sys; import hindsight_ref.toyworld.world as w; from hindsight_ref import simulators; "
            "w.world_judge('no_emojis')('q', 'sure .', 'perfect !'); w.world_persona('less_filler').profile; "
            "print(sorted(m for m in ('torch', 'transformers', 'hindsight_ref.models', 'hindsight_ref.contexts') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr[-2000:])


def test_render_needs_every_attribute():
    with pytest.raises(ValueError, match="missing attributes"):
        w.render_response(w.Request("info", "tea", "tell me about tea ."), {"emoji": True}, random.Random(0))


@pytest.fixture(scope="module")
def wtok():
    return wm.world_tokenizer()


def test_tokenizer_chat_template_and_round_trip(wtok):
    rng = random.Random(0)
    for _ in range(50):
        conv = w.world_conversation(rng)
        text = wtok.apply_chat_template(conv, tokenize=False)
        assert text == wm.chatml(conv)
        ids = wtok(text, add_special_tokens=False)["input_ids"]
        assert wtok.unk_token_id not in ids
        assert wtok.decode(wtok(conv[-1]["content"])["input_ids"]) == conv[-1]["content"]
    assert wtok.pad_token_id != wtok.eos_token_id
    assert wtok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True) \
        == wm.chatml([{"role": "user", "content": "hi"}], add_generation_prompt=True)


def test_assistant_labels_cover_assistant_turns_only(wtok):
    conv = [{"role": "user", "content": "tell me about tea ."}, {"role": "assistant", "content": "note that tea are warm ."},
            {"role": "user", "content": "keep it short ."}, {"role": "assistant", "content": "perfect !"}]
    b = wm.world_batch([conv], wtok)
    kept = [wtok.convert_ids_to_tokens(int(i)) for i, l in zip(b["input_ids"][0], b["labels"][0]) if l != -100]
    assert kept == ["note", "that", "tea", "are", "warm", ".", "<|im_end|>", "perfect", "!", "<|im_end|>"]


def _resp(**on):
    return w.render_response(w.Request("info", "tea", "tell me about tea ."), {a: on.get(a, False) for a in w.ATTRS}, random.Random(0))


def test_reward_user_and_judge():
    bad, good = _resp(praise=True, closer=True), _resp()
    assert w.true_reward("less_filler", bad) == -2 and w.true_reward("less_filler", good) == 0
    assert w.true_reward("no_emojis", bad) == 0
    u = w.WorldUser("less_filler", seed=0)
    x = [{"role": "user", "content": "tell me about tea ."}]
    assert u(x, good) in w.APPROVALS
    o = u(x, bad)
    assert o not in w.APPROVALS and any(p in o for p in w.COMPLAINTS[("praise", False)])
    assert any(p in o for p in w.COMPLAINTS[("closer", False)])
    j = w.world_judge("less_filler")
    assert j("", good, bad) == "A" and j("", bad, good) == "B"
    assert j("", good, good) == "A"                                   # first-position bias on ties
    assert w.world_judge("less_filler", tie="C")("", good, good) == "C"


def test_two_order_protocol_cancels_position_bias():
    from hindsight_ref.evaluation import two_order, win_rate
    bad, good = _resp(praise=True), _resp()
    j = w.world_judge("less_filler")
    assert two_order(j, "", good, bad) == 1 and two_order(j, "", bad, good) == -1
    assert two_order(j, "", good, good) == 0                           # A then A: the orders disagree -> tie
    wr = win_rate(j, [""] * 4, [good, good, bad, good], [bad, bad, good, good])
    assert (wr.wins, wr.losses, wr.ties) == (2, 1, 1) and wr.rate == pytest.approx(2 / 3)


def test_bad_inputs():
    with pytest.raises(KeyError, match="Unknown persona"): w.world_persona("grumpy")
    with pytest.raises(ValueError, match="at least one"): w.complaint_text({}, random.Random(0))


# The first token of each alternative of every attribute's decision (topic words stand for the plain heading).
DECISION = {"praise": ({"great", "good", "perfect"}, {"sure"}), "markdown": ({"#"}, set(w.TOPICS)),
            "long": ({"first"}, {"in"}), "casual": ({"yeah"}, {"note"}), "emoji": (set(w.EMOJIS), {"."}),
            "closer": ({"hope", "let"}, {"<|im_end|>"})}


@given(style=styles, seed=st.integers(0, 10_000), topic=st.sampled_from(w.TOPICS), kind=st.sampled_from(["info", "tip"]),
       attr=st.sampled_from(w.ATTRS))
@settings(max_examples=200, deadline=None)
def test_each_attribute_is_decided_at_its_own_token(style, seed, topic, kind, attr):
    "Flipping one attribute leaves every token before its decision unchanged, and the decision token names the attribute's value."
    wtok = wm.world_tokenizer()
    req = w.Request(kind, topic, w.REQUESTS[kind][0].format(t=topic))
    ids = {v: wtok.convert_ids_to_tokens(wtok(w.render_response(req, {**style, attr: v}, random.Random(seed)))["input_ids"]) + ["<|im_end|>"]
           for v in (True, False)}
    i = next(i for i, (a, b) in enumerate(zip(ids[True], ids[False])) if a != b)
    assert ids[True][i] in DECISION[attr][0] and ids[False][i] in DECISION[attr][1]
    for other, (on, off) in DECISION.items():      # no other attribute's decision can be read at this token
        if other != attr:
            assert not {ids[True][i], ids[False][i]} & (on | off), (attr, other, ids[True][i], ids[False][i])


def test_combine_personas():
    m = w.combine_personas("no_emojis", "less_filler", "direct_plain")
    assert m.wanted() == {"emoji": False, "praise": False, "closer": False, "markdown": False, "long": False}
    assert m.name == "no_emojis+less_filler+direct_plain"
    flip = w.combine_personas("concise_casual_beginner", "detailed_professional_expert")   # a later persona wins a conflict
    assert flip.wanted() == {"long": True, "casual": False}
    bad = w.render_response(w.Request("info", "tea", "tell me about tea ."), dict.fromkeys(w.ATTRS, True), random.Random(0))
    assert w.true_reward(m, bad) == -5.0
    assert "dislikes emojis" in m.profile and "filler praise" in m.profile     # the paper's profile texts, combined


@pytest.fixture(scope="module")
def world():
    return wm.load_world()


def test_world_model_reads_hindsight(world):
    "On the shipped model: a complaint about praise makes the praise token much less likely; an unrelated follow-up does not."
    from hindsight_ref.signal import hindsight_signal
    model, tok = world
    x = [{"role": "user", "content": "tell me about tea ."}]
    y = _resp(praise=True)
    rel, unr = hindsight_signal(model, tok, [Interaction(x, y, "skip the praise ."), Interaction(x, y, "any tips on chess ?")],
                                progress=False)
    assert rel.tokens[0].strip() in ("great", "good", "perfect")
    assert rel.advantage[0] < -1.0 and abs(unr.advantage[0]) < 0.3
    assert rel.sequence_advantage < unr.sequence_advantage - 1.0


def test_the_library_step_on_the_world_is_the_hand_computation(world):
    "train.hindsight_loss on a world interaction == -(1/|y|) sum_i A_i log p_student(y_i), from two plain forward passes of ChatML text."
    from hindsight_ref.contexts import collate, encode_interactions, get_template
    from hindsight_ref.train import hindsight_loss
    model, tok = world
    it = Interaction([{"role": "user", "content": "tell me about tea ."}], _resp(emoji=True), "no emojis please .")
    b = collate(encode_interactions(tok, [it]), tok.pad_token_id)
    loss = hindsight_loss(model, b, **ex.world_config(ref_kl=0.0).loss_args()).loss   # the paper's loss

    def logps(text):
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad(): lp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        return lp.gather(-1, ids[0, 1:, None])[:, 0]
    T = len(tok(it.y, add_special_tokens=False)["input_ids"]) + 1
    s_text = wm.chatml(it.x, True) + it.y + "<|im_end|>"
    t_text = wm.chatml([{"role": "user", "content": it.x[0]["content"] + get_template("paper").hindsight_block(it.o)}], True) + it.y + "<|im_end|>"
    ls, lt = logps(s_text)[-T:], logps(t_text)[-T:]
    expected = -((lt - ls) * ls).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-5)


def test_world_recipes_are_library_configs():
    c = ex.world_config()
    assert (c.mode, c.loss, c.ref_kl, c.batch_size, c.template) == ("online", "sampled_token", 2.0, 10, "paper")
    assert ex.world_config(ref_kl=0.0).ref_kl == 0.0                        # the paper's recipe
    for overrides in ex.WORLD_VARIANTS.values(): ex.world_config(**overrides)   # every variant is a valid TrainConfig


def test_a_world_run_goes_through_the_library_trainer(world):
    from hindsight_ref.trainers import OnlineTrainer
    tr = ex.world_trainer(w.WorldUser("less_filler", seed=0), 20, ex.world_config(max_new_tokens=24))
    assert isinstance(tr, OnlineTrainer) and tr.ref is not None and tr.total_steps == 2
    calls = []
    hist = ex.train_and_evaluate(tr, lambda m: calls.append(1) or {"probe": float(len(calls))}, every=10)
    assert [h["interactions"] for h in hist] == [0, 10, 20] and tr.step == 2
    logged = (tr.out / "interactions.jsonl").read_text().splitlines()
    assert len(logged) + tr.n_empty == 20


def test_plot_helpers_draw_from_the_library():
    "The plot helpers work from a plain import (no notebook globals) and draw what they are given."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rates = {a: 0.1 * (i + 1) for i, a in enumerate(w.ATTRS)}
    comp = {(a, v): 0.9 if v else 0.8 for a in w.ATTRS for v in (False, True)}
    ax = wm.plot_world_model(rates, comp)
    heights = [[round(float(p.get_height()), 6) for p in bars] for bars in ax.containers]
    assert heights == [[round(rates[a], 6) for a in w.ATTRS], [0.8] * 6, [0.9] * 6]
    hist = [{"interactions": 0, "w": 0.5}, {"interactions": 50, "w": 0.9}]
    ax = plot_win_curves({"lf": (hist, "w")}, {"lf": 0.95}, boundaries=[50])
    assert list(ax.lines[0].get_ydata()) == [50, 90] and any(list(l.get_ydata()) == [95, 95] for l in ax.lines)
    ax = ex.plot_win_vs_drift([dict(variant="v", win=0.9, max_drift=0.05), dict(variant="w", win=0.97, max_drift=0.3)])
    assert [c.get_offsets().tolist() for c in ax.collections[:2]] == [[[0.05, 90.0]], [[0.3, 97.0]]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["v", "w", "meets both targets"]
    plt.close("all")


def test_shipped_checkpoint_matches_the_code(world):
    "The shipped world model was trained with PRETRAIN_DEFAULTS (also pretrain_world's defaults), on today's vocabulary."
    import inspect, json
    assert wm.FIXTURE_DIR == fixture_file("toyworld")                    # found through the one fixture finder
    meta = json.loads((wm.FIXTURE_DIR / "world.json").read_text())
    assert {k: meta[k] for k in wm.PRETRAIN_DEFAULTS} == wm.PRETRAIN_DEFAULTS
    sig = inspect.signature(wm.pretrain_world)
    assert {k: sig.parameters[k].default for k in wm.PRETRAIN_DEFAULTS} == wm.PRETRAIN_DEFAULTS
    assert world[1].get_vocab() == wm.world_tokenizer().get_vocab()      # a change to the world's words needs a rebuild


def test_pretraining_is_deterministic_within_a_process():
    "Two short pretraining runs with the same settings, in one process, give bitwise-identical weights; another seed does not."
    kw = dict(wm.PRETRAIN_DEFAULTS, steps=4, batch_size=8, bucket=2, verbose=False)
    (m1, _, _), (m2, _, _) = wm.pretrain_world(**kw), wm.pretrain_world(**kw)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    m3 = wm.pretrain_world(**dict(kw, seed=1))[0]
    assert not all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values()))
