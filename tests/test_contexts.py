"Tests for hindsight_ref.contexts: templates, encoding (both tokenizers), truncation, collation, saving."
import copy
import json
import re

import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

from hindsight_ref.data import (Interaction, ConversationError, FilterReport, interactions_from_conversation, fixture_interactions,
                                load_wildchat, fixture_file, load_interactions)
from hindsight_ref.contexts import (HindsightTemplate, TEMPLATES, get_template, register_template, EncodedInteraction,
                                    encode_interaction, encode_interactions, collate, end_of_turn_id,
                                    render_chat, tokenize_text, chat_template_kwargs, show_contexts, encoded_to_dataset,
                                    encoded_from_dataset, to_prompt_completion, from_prompt_completion, model_max_positions, NO_TRUNCATION)

# NFC-stable characters (the Qwen tokenizer NFC-normalises), including markup-like and non-Latin ones
ALPHABET = st.sampled_from(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"()[]{}<>|/\\-_*#\n\té中😀"))
TEXT = st.text(ALPHABET, min_size=1, max_size=40).map(str.strip).filter(bool).filter(lambda s: "<|" not in s)  # special-token text is a tested error
TURN = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)<\|im_end\|>\n", re.S)


@st.composite
def interactions(draw):
    n = draw(st.integers(1, 6))                  # number of (user, assistant) exchanges
    msgs = []
    if draw(st.booleans()): msgs.append({"role": "system", "content": draw(TEXT)})
    for k in range(n):
        msgs += [{"role": "user", "content": draw(TEXT)}, {"role": "assistant", "content": draw(TEXT)}]
    msgs.append({"role": "user", "content": draw(TEXT)})
    its = interactions_from_conversation(msgs, max_history=draw(st.integers(1, 7)))
    return draw(st.sampled_from(its))


def turns(tokenizer, ids):
    "(role, content) of every complete ChatML turn in the decoded ids, and the text after the last one."
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    found = [(m.group(1), m.group(2)) for m in TURN.finditer(text)]
    tail = text[max((m.end() for m in TURN.finditer(text)), default=0):]
    return found, tail


def drop_default_system(found, x):
    "SmolLM2's template inserts a default system prompt when x has none."
    if found and found[0][0] == "system" and x[0]["role"] != "system": return found[1:]
    return found


@pytest.fixture(scope="module")
def toks(tok, qwen_tok):
    return {"smollm2": tok, "qwen3": qwen_tok}


# ---- acceptance 1: property-based, both tokenizers -------------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(it=interactions(), which=st.sampled_from(["smollm2", "qwen3"]), template=st.sampled_from(sorted(TEMPLATES)),
       k=st.integers(0, 3))
def test_property_encoding(toks, it, which, template, k):
    tok = toks[which]
    t = get_template(template)
    e = encode_interaction(tok, it, template)
    eot = end_of_turn_id(tok)
    # the completion ids: y then the end-of-turn token, the same list for both passes
    assert e.completion_ids == tokenize_text(tok, it.y.rstrip()) + [eot]
    # the decoded contexts hold x (and o for the teacher) in the right turns
    s_turns, s_tail = turns(tok, e.student_context_ids)
    t_turns, t_tail = turns(tok, e.teacher_context_ids)
    x_turns = [(m["role"], m["content"]) for m in it.x]
    assert drop_default_system(s_turns, it.x) == x_turns
    if t.placement == "user":
        assert drop_default_system(t_turns, it.x) == x_turns[:-1] + [("user", it.x[-1]["content"] + t.hindsight_block(it.o))]
    else:
        assert drop_default_system(t_turns, it.x) == x_turns + [("assistant", it.y), ("user", it.o.strip())]
    assert it.o.strip() in tok.decode(e.teacher_context_ids) and s_tail == t_tail and s_tail.startswith("<|im_start|>assistant\n")
    # the batch: completion columns aligned in both passes, masks cover exactly the completion
    other = encode_interaction(tok, Interaction(x=[{"role": "user", "content": "hi"}], y="a much longer answer " * 3, o="ok"), template)
    b = collate([e, other], tok.pad_token_id, ignore_first_k=k)
    for side, ctx in (("student", e.student_context_ids), ("teacher", e.teacher_context_ids)):
        L, ids, att = b[f"{side}_context_len"], b[f"{side}_input_ids"][0], b[f"{side}_attention_mask"][0]
        n = len(e.completion_ids)
        assert ids[L:L + n].tolist() == e.completion_ids == b["completion_ids"][0, :n].tolist()
        assert ids[L - len(ctx):L].tolist() == ctx
        expect = torch.zeros_like(att); expect[L - len(ctx):L + n] = 1
        assert torch.equal(att, expect)
    n = len(e.completion_ids)
    assert b["completion_mask"][0].tolist() == [True] * n + [False] * (b["completion_ids"].shape[1] - n)
    assert b["loss_mask"][0].tolist() == [j >= k for j in range(n)] + [False] * (b["completion_ids"].shape[1] - n)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(it=interactions(), which=st.sampled_from(["smollm2", "qwen3"]), template=st.sampled_from(sorted(TEMPLATES)),
       limit=st.integers(1, 200))
def test_property_truncation_drops_only_older_history(toks, it, which, template, limit):
    "Within the limit: the same contexts as the interaction with its k oldest messages removed by hand; else a clear error."
    tok = toks[which]
    full = encode_interaction(tok, it, template)
    k0 = 1 if it.x[0]["role"] == "system" else 0
    try: cut = encode_interaction(tok, it, template, max_context_tokens=limit)
    except ConversationError as e:
        assert e.reason == "context_too_long" and f"max_context_tokens={limit}" in str(e) and "on_bad_record='skip'" in str(e)
        # ... and only when even the system message + question + hindsight block do not fit
        alone = encode_interaction(tok, Interaction(it.x[:k0] + it.x[-1:], it.y, it.o), template)
        assert max(len(alone.student_context_ids), len(alone.teacher_context_ids)) > limit
        return
    k = cut.truncated["history_messages"]
    by_hand = encode_interaction(tok, Interaction(it.x[:k0] + it.x[k0 + k:], it.y, it.o), template)
    assert (cut.student_context_ids, cut.teacher_context_ids) == (by_hand.student_context_ids, by_hand.teacher_context_ids)
    assert max(len(cut.student_context_ids), len(cut.teacher_context_ids)) <= limit
    assert cut.completion_ids == full.completion_ids and cut.truncated["completion"] == 0
    assert it.x[k0 + k]["role"] == "user" and (k == 0) == (max(len(full.student_context_ids), len(full.teacher_context_ids)) <= limit)
    if k:   # the fewest messages dropped: one fewer (back to the previous user message) would not fit
        prev = max(j for j in range(k0, k0 + k) if it.x[j]["role"] == "user")
        more = encode_interaction(tok, Interaction(it.x[:k0] + it.x[prev:], it.y, it.o), template)
        assert max(len(more.student_context_ids), len(more.teacher_context_ids)) > limit
    for side in ("student", "teacher"):
        assert cut.truncated[side] == len(getattr(full, f"{side}_context_ids")) - len(getattr(cut, f"{side}_context_ids"))
    if k:
        with pytest.raises(ConversationError, match="truncation_side='error'"):
            encode_interaction(tok, it, template, max_context_tokens=limit, truncation_side="error")


# ---- templates --------------------------------------------------------------------------------------------------------

def test_templates_verbatim_and_user_defined():
    x = [{"role": "user", "content": "Q"}]
    assert TEMPLATES["paper"].teacher_messages(x, " o ")[-1]["content"] == (
        "Q\n\nThe following is a future user message. Use this to guide your answer to the user prompt: o")
    assert TEMPLATES["offline_code"].hindsight_block("o") == (
        "\n\n[HINDSIGHT CONTEXT]\nThe following is a user response to your previous, insufficient attempt. Improve your "
        "response to the user prompt.\nFuture User Message: o")
    assert TEMPLATES["online_code"].hindsight_block("o") == (
        "\n\n=== HINDSIGHT CONTEXT ===\n[The following is a future user message. Use this to guide your answer to the user "
        "prompt.]\no")
    assert TEMPLATES["turns"].teacher_messages(x, "o", "y") == x + [{"role": "assistant", "content": "y"}, {"role": "user", "content": "o"}]
    assert TEMPLATES["paper"].student_messages(x) == x and TEMPLATES["paper"].student_messages(x) is not x
    mine = HindsightTemplate("mine", "\n[{o}]")
    assert mine.teacher_messages(x, "{a}")[-1]["content"] == "Q\n[{a}]"
    assert get_template(mine) is mine and register_template(mine) is mine and get_template("mine") is mine
    with pytest.raises(ValueError, match="exists already"):
        register_template(HindsightTemplate("mine", "other {o}"))
    del TEMPLATES["mine"]


def test_template_errors():
    x = [{"role": "user", "content": "Q"}]
    with pytest.raises(KeyError, match="Unknown hindsight template 'papr'"): get_template("papr")
    with pytest.raises(TypeError): get_template(3)
    with pytest.raises(ValueError, match="placeholder"): HindsightTemplate("t", "no o here")
    with pytest.raises(ValueError, match="placement"): HindsightTemplate("t", "{o}", placement="system")
    with pytest.raises(ValueError, match="needs y"): TEMPLATES["turns"].teacher_messages(x, "o")
    with pytest.raises(ValueError, match="end with a user message"):
        TEMPLATES["paper"].teacher_messages([{"role": "assistant", "content": "a"}], "o")
    with pytest.raises(ValueError, match="non-empty string"): TEMPLATES["paper"].teacher_messages(x, "  ")


# ---- rendering details ------------------------------------------------------------------------------------------------

def test_thinking_off_and_end_of_turn(tok, qwen_tok):
    assert chat_template_kwargs(tok) == {} and chat_template_kwargs(qwen_tok) == {"enable_thinking": False}
    x = [{"role": "user", "content": "hi"}]
    assert render_chat(qwen_tok, x).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert render_chat(tok, x).endswith("<|im_start|>assistant\n")
    assert tok.convert_ids_to_tokens(end_of_turn_id(tok)) == "<|im_end|>"
    assert qwen_tok.convert_ids_to_tokens(end_of_turn_id(qwen_tok)) == "<|im_end|>"
    # a Qwen tokenizer whose eos is <|endoftext|>: the end of turn still comes from the template
    q2 = copy.deepcopy(qwen_tok); q2.eos_token = "<|endoftext|>"
    assert q2.convert_ids_to_tokens(end_of_turn_id(q2)) == "<|im_end|>"
    # a template that closes turns with plain text: fall back to eos
    plain = copy.deepcopy(tok)
    plain.chat_template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    with pytest.warns(UserWarning, match="using eos_token"):
        assert end_of_turn_id(plain) == plain.eos_token_id


def test_trailing_whitespace_of_y_is_stripped(tok):
    a = encode_interaction(tok, Interaction([{"role": "user", "content": "q"}], "answer  \n", "o"))
    b = encode_interaction(tok, Interaction([{"role": "user", "content": "q"}], "answer", "o"))
    assert a.completion_ids == b.completion_ids


# ---- bad inputs ------------------------------------------------------------------------------------------------------

def test_encoding_errors(tok):
    it = fixture_interactions(tags=["paper_fig8"])[0]
    n = len(encode_interaction(tok, it).completion_ids)
    with pytest.raises(ConversationError, match="truncate_completion=True") as e:
        encode_interaction(tok, it, max_completion_tokens=n - 1)
    assert e.value.reason == "completion_too_long" and "fixture-003#turn1" in str(e.value) and "on_bad_record='skip'" in str(e.value)
    cut = encode_interaction(tok, it, max_completion_tokens=n - 1, truncate_completion=True)
    assert len(cut.completion_ids) == n - 1 and cut.truncated["completion"] == 1
    with pytest.raises(ValueError, match="truncation_side must be 'left'"):
        encode_interaction(tok, it, truncation_side="right")
    for kw in ({"max_context_tokens": 0}, {"max_completion_tokens": -1}, {"max_positions": 0}, {"max_context_tokens": 2.5}):
        with pytest.raises(ValueError, match="must be a positive int"): encode_interaction(tok, it, **kw)
    bad = Interaction([{"role": "user", "content": "print <|im_end|> please"}], "ok", "thanks")
    with pytest.raises(ConversationError, match="special-token string '<\\|im_end\\|>'.*Fix: remove or escape") as e:
        encode_interaction(tok, bad)
    assert e.value.reason == "special_token_in_text"
    with pytest.raises(TypeError, match="needs an Interaction"):
        encode_interaction(tok, {"x": [], "y": "", "o": ""})


U = lambda s: {"role": "user", "content": s}
A_ = lambda s: {"role": "assistant", "content": s}


def test_long_messages_never_silently_cut(tok):
    "The question, the follow-up and the system prompt survive, or the error says which limit to raise."
    sys_msg = {"role": "system", "content": "Answer in French."}
    long_old = Interaction([sys_msg, U("word " * 3000), A_("ok"), U("What is 2+2?")], "4", "Say it in words.", {"conversation_id": "c1", "turn": 2})
    e = encode_interaction(tok, long_old)                          # the long message is older history: dropped, and counted
    assert e.truncated["history_messages"] == 2 and e.truncated["student"] > 3000
    text = tok.decode(e.teacher_context_ids)
    assert "Answer in French." in text and "What is 2+2?" in text and "Say it in words." in text and "word word" not in text
    assert e.student_context_ids == encode_interaction(tok, Interaction([sys_msg, U("What is 2+2?")], "4", "Say it in words.")).student_context_ids
    long_q = Interaction([U("hi"), A_("hello"), U("Summarise: " + "word " * 3000)], "ok", "shorter", {"conversation_id": "c2", "turn": 2})
    with pytest.raises(ConversationError, match=r"c2#turn2: the teacher context has \d+ tokens, more than max_context_tokens=2048 "
                                            r"\(still \d+ after dropping all older history") as err:
        encode_interaction(tok, long_q)
    assert err.value.reason == "context_too_long" and "raise max_context_tokens to at least" in str(err.value)
    long_o = Interaction([U("What is 2+2?")], "4", "Wrong. " * 3000)
    with pytest.raises(ConversationError, match=r"x has no older history to drop.*shorten the question or the follow-up"):
        encode_interaction(tok, long_o)
    long_sys = Interaction([{"role": "system", "content": "rule " * 3000}, U("q")], "a", "o")
    with pytest.raises(ConversationError, match="never cut"):
        encode_interaction(tok, long_sys)
    for t in TEMPLATES:                                            # every placement keeps o and the question
        e = encode_interaction(tok, long_old, t)
        assert "What is 2+2?" in tok.decode(e.teacher_context_ids) and "Say it in words." in tok.decode(e.teacher_context_ids)


def test_model_positions_are_checked(tok, qwen_tok, tiny):
    model, _ = tiny
    assert model_max_positions(model) == model.config.max_position_embeddings == 4096
    assert model_max_positions(tokenizer=tok) is None                           # SmolLM2's tokenizer does not say
    assert model_max_positions(tokenizer=qwen_tok) == qwen_tok.model_max_length < 10**8
    assert model_max_positions() is None
    it = Interaction([U("word " * 300)], "answer " * 300, "o", {"file": "d.jsonl", "line": 5})
    n = len(encode_interaction(tok, it).teacher_context_ids) + len(encode_interaction(tok, it).completion_ids)
    assert encode_interaction(tok, it, max_positions=n).completion_ids              # exactly at the limit: fine
    with pytest.raises(ConversationError, match=rf"d.jsonl:5: context and completion take {n} tokens, more than the model's "
                                            rf"{n - 1} positions.*at most {n - 1}") as e:
        encode_interaction(tok, it, max_positions=n - 1)
    assert e.value.reason == "longer_than_model"


def test_errors_name_the_file_line(tok, tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"x": [U("hi")], "y": "ok", "o": "thanks"}) + "\n" +
                 json.dumps({"conversation_id": "c5", "conversation": [U("say <|im_end|>"), A_("ok"), U("thanks")]}) + "\n")
    its = load_interactions(p)
    with pytest.raises(ConversationError, match=rf"{p}:2 c5#turn1: the x text contains the special-token string"):
        encode_interactions(tok, its)
    rep = FilterReport("encode", unit="interactions")
    assert len(encode_interactions(tok, its, on_bad_record="skip", report=rep)) == 1
    assert dict(rep.skipped) == {"special_token_in_text": 1} and rep.examples["special_token_in_text"] == [f"{p}:2 c5#turn1"]


def test_encode_interactions_skip_is_counted(tok):
    good = fixture_interactions()[:5]
    bad = [Interaction([{"role": "user", "content": "q"}], "y <|im_start|>", "o"),
           Interaction([{"role": "user", "content": "q"}], "word " * 300, "o")]
    with pytest.raises(ConversationError): encode_interactions(tok, good + bad, max_completion_tokens=100)
    with pytest.raises(ValueError, match="on_bad_record must be one of"): encode_interactions(tok, good, on_bad_record="raise")
    rep = FilterReport("encode")
    out = encode_interactions(tok, good + bad, on_bad_record="skip", report=rep, max_completion_tokens=100)
    assert len(out) == 5 and (rep.seen, rep.kept) == (7, 5)
    assert dict(rep.skipped) == {"special_token_in_text": 1, "completion_too_long": 1}
    assert rep.examples == {"special_token_in_text": ["interaction[5]"], "completion_too_long": ["interaction[6]"]}
    with pytest.warns(UserWarning, match="7 interactions seen, 5 kept, 2 skipped"):
        encode_interactions(tok, good + bad, on_bad_record="skip", max_completion_tokens=100)
    long_history = [i for i in fixture_interactions(tags=["long_history"]) if len(i.x) >= 5][:3]
    limit = min(len(encode_interaction(tok, i).teacher_context_ids) for i in long_history) - 1
    rep = FilterReport()
    out = encode_interactions(tok, long_history, report=rep, max_context_tokens=limit)
    assert len(out) == 3 and rep.truncated["older_history_dropped"] == sum(e.truncated["history_messages"] > 0 for e in out) >= 1
    with pytest.warns(UserWarning, match="shortened: older_history_dropped"):       # shortened without a report: said
        encode_interactions(tok, long_history, max_context_tokens=limit)
    cut = encode_interactions(tok, bad[1:], report=rep, max_completion_tokens=100, truncate_completion=True)
    assert cut[0].truncated["completion"] > 0 and rep.truncated["completion_cut"] == 1
def test_collate_errors_and_toy_layout():
    with pytest.raises(ValueError, match="empty batch"): collate([], 0)
    e = EncodedInteraction([1], [1, 2], [3, 4])
    with pytest.raises(ValueError, match="ignore_first_k"): collate([e], 0, ignore_first_k=-1)
    with pytest.raises(ValueError, match="pad_token_id"): collate([e], None)
    with pytest.raises(ValueError, match="empty context or completion"): collate([EncodedInteraction([1], [1], [])], 0)
    b = collate([EncodedInteraction([5, 6], [5, 6, 7, 8], [21, 22, 23]), EncodedInteraction([9], [9, 7], [31])], 0, ignore_first_k=1)
    assert b["student_input_ids"].tolist() == [[5, 6, 21, 22, 23], [0, 9, 31, 0, 0]]
    assert b["teacher_input_ids"].tolist() == [[5, 6, 7, 8, 21, 22, 23], [0, 0, 9, 7, 31, 0, 0]]
    assert b["teacher_attention_mask"].tolist() == [[1] * 7, [0, 0, 1, 1, 1, 0, 0]]
    assert b["completion_ids"].tolist() == [[21, 22, 23], [31, 0, 0]]
    assert b["completion_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert b["loss_mask"].tolist() == [[False, True, True], [False, False, False]]
    assert (b["student_context_len"], b["teacher_context_len"]) == (2, 4)
    assert b["loss_mask"].dtype == torch.bool and b["student_input_ids"].dtype == torch.long


# ---- the layout on a real model --------------------------------------------------------------------------------------

def test_padded_batch_matches_unpadded_rows(tiny):
    model, tok = tiny
    encs = encode_interactions(tok, fixture_interactions()[:4])
    b = collate(encs, tok.pad_token_id)
    with torch.no_grad():
        for side in ("student", "teacher"):
            L = b[f"{side}_context_len"]
            lp = model(input_ids=b[f"{side}_input_ids"], attention_mask=b[f"{side}_attention_mask"],
                       position_ids=b[f"{side}_position_ids"]).logits.float().log_softmax(-1)
            lp = lp[:, L - 1:-1].gather(-1, b["completion_ids"][..., None])[..., 0]
            for r, e in enumerate(encs):
                n = len(e.completion_ids)
                ref = model(input_ids=torch.tensor([getattr(e, f"{side}_ids")])).logits.float().log_softmax(-1)[0, -n - 1:-1]
                ref = ref.gather(-1, torch.tensor(e.completion_ids)[:, None])[:, 0]
                # float32 sums in another order move log p by a few eps * max|log p| (measured: < 2); misalignment by O(1)
                ulp = torch.finfo(torch.float32).eps * ref.abs().max().item()
                assert (lp[r, :n] - ref).abs().max().item() <= 64 * ulp


# ---- views and saving ------------------------------------------------------------------------------------------------

def test_show_contexts_marks_the_block(tok):
    it = fixture_interactions(tags=["paper_fig2"])[0]
    v = show_contexts(tok, it)
    assert v.added == TEMPLATES["paper"].hindsight_block(it.o)
    assert "⟦" in str(v) and '<span style="background' in v._repr_html_()
    assert "&lt;|im_start|&gt;" in v._repr_html_()           # escaped


def test_encoded_dataset_round_trip(tok, tmp_path):
    import datasets
    its, rep = load_wildchat(path="json", data_files=str(fixture_file()))
    encs = encode_interactions(tok, its, template="offline_code")
    encoded_to_dataset(encs).save_to_disk(str(tmp_path / "enc"))
    back = encoded_from_dataset(datasets.load_from_disk(str(tmp_path / "enc")))
    assert len(back) == len(encs) == rep.interactions
    for a, b in zip(encs, back):
        assert (a.student_context_ids, a.teacher_context_ids, a.completion_ids, a.interaction, a.truncated, a.template) == \
               (b.student_context_ids, b.teacher_context_ids, b.completion_ids, b.interaction, b.truncated, b.template)
    e = EncodedInteraction([1], [1], [2])
    assert e.truncated == NO_TRUNCATION and e.truncated is not NO_TRUNCATION
    # collate reads the dataset rows directly
    ds = datasets.load_from_disk(str(tmp_path / "enc"))
    bb = collate([ds[0], ds[1]], tok.pad_token_id)
    assert torch.equal(bb["completion_ids"], collate(encs[:2], tok.pad_token_id)["completion_ids"])


# ---- export to the prompt/completion format -------------------------------------------------------------------------------------------------------

def test_prompt_completion_round_trip(tmp_path):
    import datasets
    fx = fixture_interactions()
    ds = to_prompt_completion(fx)
    assert set(ds.column_names) == {"prompt", "completion", "o", "meta"}
    assert ds[0]["completion"] == [{"role": "assistant", "content": fx[0].y}] and ds[0]["prompt"][-1]["role"] == "user"
    ds.save_to_disk(str(tmp_path / "pc"))
    assert from_prompt_completion(datasets.load_from_disk(str(tmp_path / "pc"))) == fx
    with pytest.raises(ValueError, match="no interactions"):
        to_prompt_completion([])
