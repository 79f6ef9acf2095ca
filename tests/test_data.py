"Tests for hindsight_ref.data: interactions from conversations, schemas, filters with counted skips, loaders, fixture set."
import json
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from hindsight_ref.data import (Interaction, ConversationError, FilterReport, Filters, WILDCHAT_FILTERS, WILDFEEDBACK_FILTERS, NO_FILTERS,
                                interactions_from_conversation, normalize_messages, filter_interactions, clean_conversation,
                                load_fixture_conversations, fixture_interactions, load_wildchat, load_wildfeedback,
                                load_interactions, interaction_name,
                                control_interactions, APPROVAL_FOLLOWUP, resolve_role_map, ROLE_MAP, read_records,
                                write_records, fixture_file, FIXTURE_FILE)

u = lambda s: {"role": "user", "content": s}
a = lambda s: {"role": "assistant", "content": s}


def alternating(n, start=0):
    return [u(f"m{k}") if k % 2 == 0 else a(f"m{k}") for k in range(start, start + n)]


def to_sharegpt(msgs):
    return [{"from": {"user": "human", "assistant": "gpt", "system": "system"}[m["role"]], "value": m["content"]} for m in msgs]


# ---- interactions_from_conversation --------------------------------------------------------------------------------

def test_hand_example_window_of_five():
    its = interactions_from_conversation(alternating(9))
    assert [(i.y, i.o) for i in its] == [("m1", "m2"), ("m3", "m4"), ("m5", "m6"), ("m7", "m8")]
    assert [[m["content"] for m in i.x] for i in its] == [["m0"], ["m0", "m1", "m2"], ["m0", "m1", "m2", "m3", "m4"],
                                                          ["m2", "m3", "m4", "m5", "m6"]]
    assert [i.meta["history_dropped"] for i in its] == [0, 0, 0, 2]


def test_even_window_drops_leading_assistant_and_system_is_kept_outside_window():
    its = interactions_from_conversation([{"role": "system", "content": "S"}] + alternating(9), max_history=4)
    assert [m["content"] for m in its[-1].x] == ["S", "m4", "m5", "m6"]
    assert all(i.x[0]["role"] == "system" and i.x[1]["role"] == "user" for i in its)


@st.composite
def conversations(draw):
    n = draw(st.integers(3, 14))
    if n % 2 == 0 and draw(st.booleans()): n += 1
    msgs = alternating(n)
    sys = draw(st.booleans())
    return ([{"role": "system", "content": "sys"}] if sys else []) + msgs, sys, n


@settings(max_examples=100, deadline=None)
@given(conversations(), st.integers(1, 9))
def test_property_interactions(c, max_history):
    msgs, sys, n = c
    its = interactions_from_conversation(msgs, max_history=max_history)
    body = msgs[1:] if sys else msgs
    pairs = [(k, body[k]["content"], body[k + 1]["content"]) for k in range(1, n - 1) if body[k]["role"] == "assistant"]
    assert [(i.y, i.o) for i in its] == [(y, o) for _, y, o in pairs]
    for it, (k, _, _) in zip(its, pairs):
        x = it.x[1:] if sys else it.x
        assert (it.x[0]["content"] == "sys") == sys
        assert x[0]["role"] == "user" and x[-1]["role"] == "user"
        assert 1 <= len(x) <= max_history
        assert x == body[k - len(x):k]                              # a contiguous suffix of the history before y
        assert len(x) >= max_history - 1 or k - len(x) == 0         # as long as the window allows
        assert all(p["role"] != q["role"] for p, q in zip(x, x[1:]))


def test_both_schemas_give_same_interactions():
    msgs = [{"role": "system", "content": "Be brief."}] + alternating(7)
    a_ = interactions_from_conversation({"conversation": msgs})
    b_ = interactions_from_conversation({"conversations": to_sharegpt(msgs)})
    assert [(i.x, i.y, i.o) for i in a_] == [(i.x, i.y, i.o) for i in b_]


# ---- bad inputs: clear errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("msgs, reason, text", [
    ([u("hi"), a(""), u("?")], "empty_message", "empty or whitespace"),
    ([u("hi"), a("   \n"), u("?")], "empty_message", "empty or whitespace"),
    ([u("hi"), a(None), u("?")], "non_string_message", "not str"),
    ([u("hi"), a(["list"]), u("?")], "non_string_message", "not str"),
    ([u("hi"), {"role": "bot", "content": "x"}, u("?")], "unknown_role", "unknown role 'bot'"),
    ([u("hi"), u("again"), a("x"), u("y")], "consecutive_same_role", "both 'user' messages"),
    ([u("hi"), a("hello")], "no_followup", "yields no interaction"),
    ([u("hi")], "no_followup", "yields no interaction"),
    ([], "empty_conversation", "no messages"),
    ([u("hi"), {"role": "system", "content": "S"}, a("x"), u("y")], "system_not_first", "only the first message"),
    ([u("hi"), "just a string", u("y")], "not_a_message", "not a dict"),
    ([u("hi"), {"text": "x"}, u("y")], "not_a_message", "not a dict with 'role'/'content' or 'from'/'value' keys: {'text'"),
])
def test_bad_conversations_raise_clear_errors(msgs, reason, text):
    with pytest.raises(ConversationError, match=text) as e:
        interactions_from_conversation(msgs)
    assert e.value.reason == reason


def test_over_long_message_error_and_bad_arguments():
    with pytest.raises(ConversationError, match="max_message_chars=10") as e:
        interactions_from_conversation([u("hi"), a("x" * 11), u("shorter")], max_message_chars=10)
    assert e.value.reason == "message_too_long"
    with pytest.raises(ValueError, match="max_history must be a positive int"):
        interactions_from_conversation(alternating(3), max_history=0)
    with pytest.raises(ConversationError, match="Expected a conversation"):
        interactions_from_conversation({"text": "hello"})
    with pytest.raises(ValueError, match="must end with a user message"):
        Interaction(x=[u("a"), a("b")], y="c", o="d")
    with pytest.raises(ValueError, match="Interaction.o must be a non-empty string"):
        Interaction(x=[u("a")], y="c", o=" ")


# ---- filters: counted, reported skips ----------------------------------------------------------------------------

def test_filter_report_counts_every_skip():
    recs = [
        {"conversation": alternating(5), "language": "English"},                            # kept: 2 interactions
        {"conversation": alternating(5), "language": "German"},                             # language
        {"conversation": alternating(5)},                                                   # language missing
        {"conversation": [u("hi"), a("ok"), u("q"), a("")], "language": "en"},              # empty msg dropped: kept, 1
        {"conversation": [u("hi"), a(""), u("q"), a("r"), u("s")], "language": "English"},  # after drop: u u: kept, 1 (official)
        {"conversation": [u("hi"), {"role": "tool", "content": "{}"}, u("q")], "language": "English"},  # unknown role
        {"conversation": [u("hi"), a(3), u("q")], "language": "English"},                   # non-string
        {"conversation": [u("q"), a("r")], "language": "English"},                          # too few
        {"conversation": [u("q"), a("r" * 4097), u("s")], "language": "English"},           # assistant too long
        {"conversation": [u("q" * 4097), a("r"), u("s")], "language": "English"},           # user too long
        {"conversation": [u("q" * 60000), a("r"), u("s" * 40001)], "language": "English"},  # total too long (checked first)
        {"conversation": [a("Hello, how can I help?"), u("q"), a("r"), u("s")], "language": "English"},  # leading a dropped
        {"nothing": []},                                                                    # not a conversation
    ]
    rep = FilterReport("t")
    its = list(filter_interactions(recs, WILDCHAT_FILTERS, report=rep))
    assert (rep.seen, rep.kept, rep.interactions, len(its)) == (13, 4, 5, 5)
    assert dict(rep.skipped) == {"language": 2, "unknown_role": 1, "non_string_message": 1,
                                 "too_few_messages": 1, "assistant_message_too_long": 1, "user_message_too_long": 1,
                                 "total_too_long": 1, "not_a_conversation": 1}
    assert dict(rep.messages_dropped) == {"empty_message": 2, "leading_assistant": 1}
    assert rep.seen == rep.kept + rep.n_skipped
    s = str(rep)
    assert "13 conversations seen, 4 kept, 9 skipped; 5 interactions" in s and "user_message_too_long" in s


def test_filter_options():
    rec = {"conversation": [u("hi"), u("hello?"), a("Hi!"), u("ok")], "language": "English"}
    rep = FilterReport()
    its = list(filter_interactions([rec], Filters(consecutive_same_role="drop"), report=rep))
    assert rep.messages_dropped["consecutive_same_role"] == 1 and [m["content"] for m in its[0].x] == ["hi"]
    rep = FilterReport()
    list(filter_interactions([{"conversation": [u("a"), a(""), u("b"), a("c"), u("d")], "language": "en"}],
                             Filters(drop_empty_messages=False), report=rep))
    assert dict(rep.skipped) == {"empty_message": 1}
    # WildFeedback filters: no language filter, no user-length limit
    rep = FilterReport()
    list(filter_interactions([{"conversations": to_sharegpt([u("q" * 5000), a("r"), u("s")])}], WILDFEEDBACK_FILTERS, report=rep))
    assert rep.kept == 1
    # without the length filter a conversation with no follow-up reaches the pairing step, and is counted there
    rep = FilterReport()
    assert list(filter_interactions([[u("q"), a("r")], [u("q")]], NO_FILTERS, report=rep)) == []
    assert dict(rep.skipped) == {"no_followup": 2} and rep.kept == 0
    with pytest.raises(ValueError, match="consecutive_same_role must be"):
        Filters(consecutive_same_role="merge")


def test_same_role_runs_follow_the_official_scripts_by_default():
    "h,g,h,h,g,h: the official scripts keep it and give 2 interactions (the repeat is left out of the history); 'skip' gives 0."
    h, g = u, a
    conv = {"conversation": [h("h1"), g("g1"), h("h2"), h("h3"), g("g2"), h("h4")], "language": "en"}
    its = list(filter_interactions([conv]))
    assert [([m["content"] for m in it.x], it.y, it.o) for it in its] == [(["h1"], "g1", "h2"), (["h1", "g1", "h2"], "g2", "h4")]
    for mode, n in (("history", 2), ("drop", 2), ("skip", 0)):
        rep = FilterReport(); assert len(list(filter_interactions([conv], Filters(consecutive_same_role=mode), report=rep))) == n
    assert dict(rep.skipped) == {"consecutive_same_role": 1}
    # an assistant run: the second answer follows an assistant message, so it yields no interaction ('drop' instead pairs the
    # first answer with the reply to the second); a history is cut to its window first, then loses its repeats
    two = {"conversation": [h("h1"), g("g1"), g("g2"), h("h2"), g("g3"), h("h3")], "language": "en"}
    assert [(it.y, it.o, [m["content"] for m in it.x]) for it in filter_interactions([two])] == [("g3", "h3", ["h1", "g1", "h2"])]
    assert [it.y for it in filter_interactions([two], Filters(consecutive_same_role="drop"))] == ["g1", "g3"]
    long = {"conversation": [h("a"), h("b"), g("c"), h("d"), g("e"), h("f"), g("y"), h("o")], "language": "en"}
    assert [m["content"] for m in list(filter_interactions([long], max_history=5))[-1].x] == ["b", "c", "d", "e", "f"]
    assert [m["content"] for m in list(filter_interactions([long], max_history=6))[-1].x] == ["a", "c", "d", "e", "f"]


def test_stopping_rules():
    recs = [{"conversation": alternating(5), "language": "English", "conversation_id": str(k)} for k in range(10)]
    rep = FilterReport()
    its = list(filter_interactions(recs, report=rep, max_conversations=3))
    assert rep.kept == 3 and len(its) == 6 and "max_conversations=3" in rep.stopped_early
    rep = FilterReport()
    list(filter_interactions(recs, report=rep, min_conversations=2, min_interactions=5))
    assert rep.kept == 3 and rep.interactions == 6 and "5 interactions" in rep.stopped_early


# ---- the fixture set ----------------------------------------------------------------------------------------------

def test_fixture_set_contents():
    convs = load_fixture_conversations()
    assert len(convs) >= 40
    tags = Counter(t for c in convs for t in c["tags"])
    for t in ("correction", "verbosity", "emoji", "filler_praise", "formatting", "format_violation", "satisfied",
              "topic_change", "long_history", "paper_fig1", "paper_fig2", "paper_fig8"):
        assert tags[t] >= 1, t
    assert sum(len(c["conversation"]) > 5 for c in convs) >= 5
    ids = [c["conversation_id"] for c in convs]
    assert len(set(ids)) == len(ids)
    for c in convs:
        assert c["language"] == "English" and isinstance(c["unrelated_followup"], str) and c["unrelated_followup"].strip()
        assert all(set(m) == {"role", "content"} for m in c["conversation"])
    rep = FilterReport()
    its = fixture_interactions(report=rep)
    assert rep.kept == len(convs) and rep.n_skipped == 0 and len(its) == rep.interactions >= 100
    assert any(i.meta["history_dropped"] > 0 for i in its)              # some histories are cut to 5 messages
    assert all(i.meta["unrelated_followup"] and i.meta["conversation_id"] for i in its)
    fig2 = fixture_interactions(tags=["paper_fig2"])
    assert fig2[0].o == "I said YES or NO only." and "YES or NO" in fig2[0].prompt
    fig8 = [i for i in fixture_interactions(tags=["paper_fig8"]) if i.meta["unrelated_followup"] == "What is 27*4?"]
    assert fig8[0].o == "Rewrite it in a formal tone, no emojis."


# ---- loaders on local data -------------------------------------------------------------------------------------------

def test_load_wildchat_local_json_eager_and_streaming():
    fx = fixture_interactions()
    key = lambda i: (i.meta["conversation_id"], i.meta["turn"])
    its, rep = load_wildchat(path="json", data_files=str(fixture_file()))
    its_s, rep_s = load_wildchat(path="json", data_files=str(fixture_file()), streaming=True)
    assert sorted(map(key, its)) == sorted(map(key, fx)) == sorted(map(key, its_s))
    assert rep.kept == rep_s.kept == len(load_fixture_conversations()) and rep.n_skipped == 0
    assert all(i.meta["source"] == "wildchat" for i in its)
    its10, rep10 = load_wildchat(path="json", data_files=str(fixture_file()), max_conversations=10)
    assert rep10.kept == 10 and "max_conversations" in rep10.stopped_early


def test_load_wildfeedback_local_sharegpt(tmp_path):
    convs = load_fixture_conversations()
    recs = [{"conversations": to_sharegpt(c["conversation"]), "conversation_id": c["conversation_id"]} for c in convs]
    recs.append({"conversations": to_sharegpt([u("q"), a("r")])})                                  # too few
    recs.append({"conversations": to_sharegpt([u("q"), a("r" * 5000), u("s")])})                  # assistant too long
    p = tmp_path / "wf.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in recs))
    its, rep = load_wildfeedback(data_files=str(p))
    assert rep.kept == len(convs) and dict(rep.skipped) == {"too_few_messages": 1, "assistant_message_too_long": 1}
    assert [(i.x, i.y, i.o) for i in its] == [(i.x, i.y, i.o) for i in fixture_interactions()]


def test_loader_unreachable_gives_clear_error():
    with pytest.raises(ConnectionError, match="data_files"):
        load_wildchat(path="no-such-org/no-such-dataset-xyz")


# ---- roles, names, reports -------------------------------------------------------------------------------------------

def test_role_map_adds_to_the_known_roles():
    conv = [{"from": "Human", "value": "q"}, {"role": "bot", "content": "a"}, {"role": "customer", "content": "o"}]
    with pytest.raises(ConversationError, match=r"unknown role 'bot'.*role_map=\{'bot': 'user'\}") as e:
        normalize_messages(conv)
    assert e.value.reason == "unknown_role"
    got = normalize_messages(conv, role_map={"Bot": "assistant", "customer": "user"})
    assert [m["role"] for m in got] == ["user", "assistant", "user"]          # 'human' still known: the map adds
    assert resolve_role_map(None) is ROLE_MAP
    for bad in ({"bot": "robot"}, {"bot": None}, ["bot"]):
        with pytest.raises(ValueError, match="role_map"): resolve_role_map(bad)
    rep = FilterReport()
    msgs = clean_conversation({"conversation": conv, "language": "en"}, report=rep, role_map={"bot": "assistant", "customer": "user"})
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"] and rep.n_skipped == 0


def test_interaction_name_and_report_summary():
    it = Interaction([u("q")], "y", "o", {"file": "d.jsonl", "line": 7, "conversation_id": "c1", "turn": 2})
    assert interaction_name(it) == "d.jsonl:7 c1#turn2"
    assert interaction_name(Interaction([u("q")], "y", "o", {"conversation_id": "c1", "turn": 1})) == "c1#turn1"
    assert interaction_name(Interaction([u("q")], "y", "o", {"file": "d.jsonl", "line": 3})) == "d.jsonl:3"
    assert interaction_name(Interaction([u("q")], "y", "o"), 4) == "interaction[4]"
    rep = FilterReport("r", unit="records")
    rep.seen, rep.kept = 6, 1
    for k in range(5): rep.skip("invalid_json", f"f:{k}")
    assert rep.skipped["invalid_json"] == 5 and rep.examples["invalid_json"] == ["f:0", "f:1", "f:2"]
    rep.truncated["older_history_dropped"] += 1
    assert rep.summary() == "r: 6 records seen, 1 kept, 5 skipped (invalid_json 5); shortened: older_history_dropped 1; 0 interactions"
    assert "e.g. f:0, f:1, f:2" in str(rep) and rep.as_dict()["examples"] == {"invalid_json": ["f:0", "f:1", "f:2"]}
    assert "\n" not in rep.summary()


# ---- controls --------------------------------------------------------------------------------------------------------

def test_controls_of_both_kinds():
    fx = fixture_interactions()[:6]
    for kind in ("unrelated", "approval"):
        c = control_interactions(fx, kind=kind)
        assert [(i.x, i.y) for i in c] == [(i.x, i.y) for i in fx]
        assert all(i.meta["control"] == kind and i.meta["real_o"] == r.o and i.meta["conversation_id"] == r.meta["conversation_id"]
                   for i, r in zip(c, fx))
        assert all(r.meta.get("control") is None for r in fx)               # the originals are untouched
    assert [i.o for i in control_interactions(fx)] == [r.meta["unrelated_followup"] for r in fx]
    assert {i.o for i in control_interactions(fx, kind="approval")} == {APPROVAL_FOLLOWUP}
    assert control_interactions(fx[0])[0].o == fx[0].meta["unrelated_followup"]        # one interaction works too
    assert control_interactions(fx[:1], kind="approval", approval="Great, thanks!")[0].o == "Great, thanks!"
    plain = Interaction([u("q")], "y", "o", {"conversation_id": "c9", "turn": 1})
    with pytest.raises(ValueError, match=r"c9#turn1 has no meta\['unrelated_followup'\].*kind='approval'"):
        control_interactions([plain])
    assert control_interactions([plain], kind="approval")[0].meta == {"conversation_id": "c9", "turn": 1, "control": "approval", "real_o": "o"}
    with pytest.raises(ValueError, match="kind must be one of"): control_interactions(fx, kind="shuffled")


# ---- load_interactions: every bad record names file, line, conversation and a fix; or is counted ----------------------

GOOD_IT = {"x": [u("What's 2+2?")], "y": "4", "o": "Thanks."}
GOOD_CONV = {"conversation_id": "ok", "conversation": [u("Name a prime."), a("7"), u("A bigger one?"), a("11"), u("ok")]}

# (what, the bad line, reason, words its message must contain)
BAD_LINES = [
    ("malformed JSON", '{"x": [{"role": "user", "content": "hi"}], "y": "hello" "o": "bye"}', "invalid_json",
     ["not valid JSON (Expecting ',' delimiter at column", "Fix: correct the line"]),
    ("truncated JSON", '{"x": [', "invalid_json", ["not valid JSON"]),
    ("not UTF-8", b'{"x": [{"role": "user", "content": "caf\xe9"}], "y": "a", "o": "b"}', "not_utf8", ["not UTF-8", "Fix: save the file as UTF-8"]),
    ("a number", "42", "not_a_conversation", ["got int"]),
    ("a string", '"hello"', "not_a_conversation", ["got str"]),
    ("conversation is a string", '{"conversation": "hi there"}', "not_a_conversation", ["'conversation' is a str"]),
    ("no o", json.dumps({"x": [u("hi")], "y": "hello"}), "missing_field", ["but not ['o']"]),
    ("x not a list", json.dumps({"x": "hi", "y": "a", "o": "b"}), "bad_x", ["x is a str"]),
    ("meta not a dict", json.dumps({**GOOD_IT, "meta": [1]}), "bad_meta", ["meta is a list"]),
    ("unknown role", json.dumps({"conversation_id": "c-role", "conversation": [u("hi"), {"role": "tool", "content": "{}"}, u("x")]}),
     "unknown_role", ["(conversation c-role)", "unknown role 'tool'", "role_map={'tool': 'user'}", "role_map: {tool: user}"]),
    ("unknown role in x", json.dumps({"x": [{"role": "bot", "content": "hi"}], "y": "a", "o": "b"}), "unknown_role", ["role_map"]),
    ("empty message", json.dumps({"conversation_id": "c-empty", "conversation": [u("hi"), a("  "), u("x")]}), "empty_message",
     ["(conversation c-empty)", "empty or whitespace"]),
    ("empty o", json.dumps({**GOOD_IT, "o": " "}), "empty_message", ["Interaction.o must be a non-empty string"]),
    ("empty y", json.dumps({**GOOD_IT, "y": ""}), "empty_message", ["Interaction.y"]),
    ("y not text", json.dumps({**GOOD_IT, "y": 4}), "non_string_message", ["Interaction.y"]),
    ("content not text", json.dumps({"conversation": [u("hi"), {"role": "assistant", "content": ["a"]}, u("x")]}),
     "non_string_message", ["not str"]),
    ("roles do not alternate", json.dumps({"conversation": [u("hi"), u("again"), a("x"), u("y")]}), "consecutive_same_role",
     ["both 'user' messages", "consecutive_same_role='history'"]),
    ("roles do not alternate in x", json.dumps({"x": [u("hi"), u("again")], "y": "a", "o": "b"}), "consecutive_same_role", ["both 'user'"]),
    ("system in the middle", json.dumps({"conversation": [u("hi"), {"role": "system", "content": "S"}, a("x"), u("y")]}),
     "system_not_first", ["only the first message"]),
    ("x ends with the assistant", json.dumps({"x": [u("hi"), a("yo")], "y": "a", "o": "b"}), "x_not_ending_in_user",
     ["must end with a user message"]),
    ("no follow-up", json.dumps({"conversation": [u("hi"), a("hello")]}), "no_followup", ["yields no interaction"]),
    ("no messages", json.dumps({"conversation": []}), "empty_conversation", ["no messages"]),
]


def write_lines(path, lines):
    path.write_bytes(b"".join((l if isinstance(l, bytes) else (l if isinstance(l, str) else json.dumps(l)).encode()) + b"\n"
                              for l in lines))
    return path


@pytest.mark.parametrize("what, line, reason, words", BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_each_bad_record_stops_with_its_place_and_fix(tmp_path, what, line, reason, words):
    p = write_lines(tmp_path / "data.jsonl", [GOOD_IT, "", line, GOOD_CONV])        # a blank line: lines still count right
    with pytest.raises(ConversationError) as e:
        load_interactions(p)
    msg = str(e.value)
    assert e.value.reason == reason and msg.startswith(f"{p}:3")
    assert "on_bad_record='skip'" in msg and "\n" not in msg
    for w in words: assert w in msg, (w, msg)
    rep = FilterReport("data", unit="records")
    its = load_interactions(p, on_bad_record="skip", report=rep)
    assert (rep.seen, rep.kept, dict(rep.skipped)) == (3, 2, {reason: 1}) and rep.examples[reason][0].startswith(f"{p}:3")
    assert [(i.meta["line"], i.meta.get("conversation_id")) for i in its] == [(1, None), (4, "ok"), (4, "ok")]
    with pytest.warns(UserWarning, match=f"skipped 1 of 3 records.*{reason} at {p}:3"):
        assert len(load_interactions(p, on_bad_record="skip")) == 3


def test_load_interactions_file_level_problems(tmp_path):
    with pytest.raises(FileNotFoundError, match="set data to 'fixtures'"): load_interactions(tmp_path / "nope.jsonl")
    with pytest.raises(IsADirectoryError, match="is a folder"): load_interactions(tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no records"): load_interactions(tmp_path / "empty.jsonl")
    p = write_lines(tmp_path / "bad.jsonl", ["{", "[1, 2]"])
    with pytest.raises(ValueError, match=r"yields no interactions: .*2 records seen, 0 kept, 2 skipped"):
        load_interactions(p, on_bad_record="skip")
    j = tmp_path / "list.json"; j.write_text(json.dumps([GOOD_IT, GOOD_IT], indent=1))
    with pytest.raises(ConversationError, match=r"list.json:1: not valid JSON.*jq -c"): load_interactions(j)
    for kw, msg in (({"on_bad_record": "ignore"}, "'stop'"), ({"max_history": 0}, "max_history"), ({"max_history": True}, "max_history"),
                    ({"role_map": {"bot": "robot"}}, "role_map")):
        with pytest.raises(ValueError, match=msg): load_interactions(write_lines(tmp_path / "ok.jsonl", [GOOD_IT]), **kw)


def test_load_interactions_reads_what_it_writes(tmp_path):
    fx = fixture_interactions()
    p = write_lines(tmp_path / "its.jsonl", [it.to_dict() for it in fx])
    back = load_interactions(p)
    assert [(i.x, i.y, i.o) for i in back] == [(i.x, i.y, i.o) for i in fx]
    assert all(b.meta == {**i.meta, "file": str(p), "line": k} for k, (b, i) in enumerate(zip(back, fx), 1))
    convs = write_lines(tmp_path / "convs.jsonl", load_fixture_conversations())
    assert [(i.x, i.y, i.o) for i in load_interactions(convs, max_history=3)] == \
           [(i.x, i.y, i.o) for i in fixture_interactions(max_history=3)]
    # CRLF line ends and a byte-order mark are read as text
    crlf = tmp_path / "crlf.jsonl"; crlf.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD_IT).encode() + b"\r\n" + json.dumps(GOOD_IT).encode() + b"\r\n")
    assert len(load_interactions(crlf)) == 2
    assert load_interactions("fixtures") == fixture_interactions()
    n, rec = next(read_records(crlf))
    assert n == 1 and rec == GOOD_IT


def test_load_interactions_role_map_turns_a_skip_into_data(tmp_path):
    p = write_lines(tmp_path / "d.jsonl", [{"conversation": [u("hi"), {"role": "bot", "content": "yo"}, u("thanks")]}, GOOD_IT])
    rep = FilterReport()
    assert len(load_interactions(p, on_bad_record="skip", report=rep)) == 1 and dict(rep.skipped) == {"unknown_role": 1}
    its = load_interactions(p, role_map={"bot": "assistant"})
    assert len(its) == 2 and its[0].y == "yo" and its[0].o == "thanks"


# ---- one JSON Lines writer -------------------------------------------------------------------------------------------

def test_write_records_appends_readable_lines_and_never_glues_a_record_to_a_torn_line(tmp_path):
    f = tmp_path / "sub" / "r.jsonl"
    write_records(f, [{"y": "één\u2028 line"}, {"y": float("nan")}])      # creates the folder; U+2028 stays inside its line
    write_records(f, {"y": 3})                                               # one dict is one record
    assert "één" in f.read_text(encoding="utf-8")                            # ensure_ascii=False
    recs = [r for _, r in read_records(f, strict=True)]
    assert recs[0] == {"y": "één\u2028 line"} and recs[1]["y"] != recs[1]["y"] and recs[2] == {"y": 3}
    with open(f, "ab") as fh: fh.write(b'{"y": 4}')                          # a complete record without its newline
    write_records(f, [{"y": 5}])
    assert [r for _, r in read_records(f, strict=True)][3:] == [{"y": 4}, {"y": 5}]
    with open(f, "ab") as fh: fh.write(b'{"y": 6, "z')                       # a torn record: the next one starts its own line
    write_records(f, {"y": 7})
    got = list(read_records(f))
    assert isinstance(got[-2][1], ConversationError) and got[-1][1] == {"y": 7}
    write_records(f, [{"y": 0}], append=False)                                # replace: the whole file, atomically
    assert list(read_records(f)) == [(1, {"y": 0})] and not list(f.parent.glob(".*tmp"))


def test_one_fixture_finder():
    assert fixture_file() == fixture_file(FIXTURE_FILE) and fixture_file().exists()
    assert fixture_file("heldout_text.jsonl").exists() and fixture_file("toyworld").is_dir()
