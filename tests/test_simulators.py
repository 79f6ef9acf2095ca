"Simulated users and judges: the paper's prompts, the verdict parser, record/replay, the endpoint client against a local server."
import json
import re
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings, strategies as st

from hindsight_ref.backends import (BackendError, CachedChat, ChatCache, OpenAIChat, TransformersChat, make_backend)
from hindsight_ref.simulators import (PERSONAS, RULE_PERSONAS, LLMJudge, LLMUser, RewardJudge, RuleBasedSimulator, judge_messages, make_judge,
                                      make_simulator, oracle_context, parse_verdict, rule_judge, rule_user, style_profile,
                                      user_messages)

X = [{"role": "user", "content": "How do I boil an egg?"}]
Y = "Great question! 🥚 Put the egg in boiling water for 9 minutes. Hope this helps! 😊"

# App. D.3 of the paper, verbatim (line breaks as printed; compared up to white space)
PAPER_USER = """USER PROFILE: {profile}
You are simulating the user's next message in a chat with an AI assistant.
Rules: - Respond as the user described in the USER PROFILE, using straightforward language.
- Evaluate ONLY the assistant's response with respect to the preferences in the USER PROFILE.
- Do NOT answer the original user request yourself. - Respond very briefly. - Do NOT give
feedback unrelated to the USER PROFILE. - Output ONLY the user message text (no labels, no
preface). - If the assistant's response matches the USER PROFILE well, you may say so briefly.
Original user request: {prompt}
Assistant response: {response}
Write the user's next message."""
PAPER_JUDGE = """USER PROFILE: {profile}
You are acting as a strict evaluator of WHICH response better matches your preference described
in the USER PROFILE. You must follow these rules: - Judge ONLY style, tone, formatting,
verbosity, and complexity relative to the persona. - Do NOT judge factual correctness. - Do
NOT rewrite responses. - Output exactly ONE character: A, B, or C. - C means tie/uncertain.
User prompt: {prompt}
Response A: {a}
Response B: {b}
Which response do you prefer as this user? Output only A, B, or C."""
PAPER_PERSONAS = {
    "no_emojis": "USER PROFILE: You are playing the role of a user who dislikes emojis and icons in assistant responses.",
    "concise_casual_beginner": "USER PROFILE: You are playing the role of a user who specifically prefers CONCISE, CASUAL, and "
                               "BEGINNER-FRIENDLY responses. You want brief context and clear explanations, avoiding long, formal, "
                               "or technically dense answers.",
    "detailed_professional_expert": "USER PROFILE: You are playing the role of a user who specifically prefers DETAILED, "
                                    "PROFESSIONAL, and EXPERT-LEVEL responses. You want a structured, impersonal, and analytical "
                                    "presentation with complex sentence structures and sophisticated wording.",
}


def ws(s): return " ".join(s.split())


@pytest.mark.parametrize("name", sorted(PERSONAS))
def test_prompts_match_the_paper(name):
    p = PERSONAS[name]
    got = "\n".join(m["content"] for m in user_messages(p, X, Y))
    assert ws(got) == ws(PAPER_USER.format(profile=p, prompt=X[0]["content"], response=Y))
    got = "\n".join(m["content"] for m in judge_messages(p, X, "one", "two"))
    assert ws(got) == ws(PAPER_JUDGE.format(profile=p, prompt=X[0]["content"], a="one", b="two"))
    assert [m["role"] for m in user_messages(p, X, Y)] == ["system", "user"]


def test_personas_verbatim_and_profile_format():
    for k, v in PAPER_PERSONAS.items(): assert "USER PROFILE: " + PERSONAS[k] == v
    assert "I hope this helps!'" in PERSONAS["less_filler"]            # the paper's typography, kept
    assert style_profile("detailed", "professional", "expert") == PERSONAS["detailed_professional_expert"]
    assert style_profile("detailed", "casual", "beginner").endswith("DETAILED, CASUAL, and BEGINNER-FRIENDLY responses.")


def test_user_prompt_uses_the_last_user_message_of_a_multi_turn_context():
    x = [{"role": "system", "content": "sys"}, {"role": "user", "content": "first"}, {"role": "assistant", "content": "a"},
         {"role": "user", "content": "second"}]
    assert "Original user request: second\n" in user_messages("p q", x, "y")[1]["content"]
    with pytest.raises(ValueError, match="ending with a user message"): user_messages("p q", x[:3], "y")


def test_oracle_context_official_suffix():
    o = oracle_context(X, "no_emojis", system="S")
    assert o[0] == {"role": "system", "content": "S\nThe user you are interacting with has the following persona:\n" + PERSONAS["no_emojis"]}
    assert X[0] == {"role": "user", "content": "How do I boil an egg?"}            # input not modified


VERDICTS = [("A", "A"), ("B.", "B"), ("**A**", "A"), ("Answer: B", "B"), ("I prefer response A", "A"), ("Response B is better.", "B"),
            ("b", "B"), ("<think>\nA has emojis.\n</think>\n\nB", "B"), ("C", "C"), ("(A)", "A"), ("The answer is A.", "A"),
            ("Tie", "C"), ("Final verdict: **B**", "B"), ("A\n\nResponse A is more concise.", "A"), ("'B'", "B"), ("Option B", "B"),
            ("Both are equally good.", "C"), ("Response A is more casual than Response B, so I prefer Response A.", "A"),
            ("  a.  ", "A"), ("Verdict - C", "C"), ("I cannot decide", None), ("", None), ("<think>Response A uses", None),
            ("A or B", None), ("A response with emojis is worse", None)]
# the decision, not the first letter named (the first seven were read otherwise before); a quoted verdict still counts
DECISIONS = [("Response B is worse.", "A"), ("The format asks for 'Output: B'. I prefer A.", "A"), ("B is clearly worse than A.", "A"),
             ("Response A is not as good as Response B.", "B"), ("I do not prefer A.", "B"), ("I don't prefer response B", "A"),
             ("I prefer a shorter answer", None), ('Final verdict: "B"', "B")]


@pytest.mark.parametrize("text,want", VERDICTS + DECISIONS)
def test_parse_verdict(text, want):
    assert parse_verdict(text) == want


def test_official_first_letter_rule_differs_where_expected():
    assert parse_verdict("Answer: B", official=True) == "A" and parse_verdict("b", official=True) == "B"   # upper-cased first
    assert parse_verdict("Response B is worse.", official=True) == "B" and parse_verdict("I cannot decide", official=True) == "C"


class Counting:
    id = "counting"
    def __init__(self): self.calls = 0
    def complete(self, batch, **kw):
        self.calls += len(batch)
        return [f"réponse {self.calls - len(batch) + i} 🙂 \u2028 \"quoted\"" for i in range(len(batch))]


def test_cache_replay_is_byte_identical_and_offline(tmp_path):
    f = tmp_path / "c.jsonl"
    msgs = [user_messages(PERSONAS["no_emojis"], X, y) for y in ("a", "b", "a")]
    be = Counting()
    first = CachedChat(be, f).complete(msgs, max_tokens=8)
    assert be.calls == 2 and first[0] == first[2]
    again = CachedChat(None, f, backend_id="counting").complete(msgs, max_tokens=8)
    assert [s.encode("utf-8") for s in again] == [s.encode("utf-8") for s in first]
    with pytest.raises(KeyError, match="replay-only"): CachedChat(None, f, backend_id="counting").complete(msgs, max_tokens=9)
    with pytest.raises(KeyError, match="not recorded"): CachedChat(None, f, backend_id="other").complete(msgs, max_tokens=8)


def test_cache_load_never_rewrites_the_file(tmp_path):
    f = tmp_path / "c.jsonl"
    CachedChat(Counting(), f).complete([[{"role": "user", "content": "q"}]])
    f.write_bytes(f.read_bytes().rstrip(b"\n"))                    # a complete last record without its final newline
    before = f.read_bytes()
    assert len(ChatCache(f)) == 1 and f.read_bytes() == before     # kept, and the file is untouched
    with open(f, "ab") as fh: fh.write(b'\n{"key": "abc", "te')     # a torn last line (interrupted, or being written)
    before = f.read_bytes()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always"); c = ChatCache(f)
    assert len(c) == 1 and any("cut off" in str(x.message) for x in w) and f.read_bytes() == before   # skipped, never deleted
    CachedChat(Counting(), c).complete([[{"role": "user", "content": "r"}]])
    assert f.read_bytes().startswith(before)                        # appended after it
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always"); assert len(ChatCache(f)) == 2


_CACHE_WRITER = """
import sys, time
from pathlib import Path
from hindsight_ref.backends import ChatCache
path, w = Path(sys.argv[1]), int(sys.argv[2])
(path.parent / f"ready-{w}").touch()
while len(list(path.parent.glob("ready-*"))) < 4: time.sleep(0.01)   # start together
for i in range(100):   # each put after a fresh load of the file, as separate runs sharing a cache do; half the answers long
    ChatCache(path).put(f"{w}-{i}", "w" * (10_000 if i % 2 == 0 else 37 * i * (w + 1) % 3000), writer=w, i=i)
"""


def test_cache_shared_by_four_processes_loses_nothing(tmp_path):
    import subprocess, sys
    f = tmp_path / "shared.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", _CACHE_WRITER, str(f), str(w)], stderr=subprocess.PIPE) for w in range(4)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    with warnings.catch_warnings():
        warnings.simplefilter("error"); c = ChatCache(f)          # no torn line either
    assert len(c) == 400 and all(f"{w}-{i}" in c for w in range(4) for i in range(100))


def test_llm_user_records_persona_x_y(tmp_path):
    u = LLMUser("no_emojis", Counting(), cache=tmp_path / "u.jsonl")
    o = u(X, Y)
    rec = json.loads((tmp_path / "u.jsonl").read_text().split("\n")[0])
    assert (rec["persona"], rec["x"], rec["y"], rec["text"], rec["kind"]) == ("no_emojis", X[0]["content"], Y, o, "user")
    assert u.many([X, X], [Y, "other"])[0] == o


# ---- the OpenAI-compatible client against a real local server -----------------------------------------
class Canned(BaseHTTPRequestHandler):
    hits: list = []
    def log_message(self, *a): pass
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"]))); m = body["model"]
        Canned.hits.append(body)
        n = sum(h["model"] == m for h in Canned.hits)
        if m == "rate" and n == 1: return self._send(429, b'{"error": {"message": "slow down"}}', {"retry-after-ms": "5"})
        if m == "always429": return self._send(429, b'{"error": {"message": "slow down"}}', {"retry-after-ms": "5"})
        if m == "err500": return self._send(500, b'{"error": {"message": "boom"}}', {"retry-after-ms": "5"})
        if m == "slow": time.sleep(1.5)
        if m == "notjson": return self._send(200, b"<html>gateway</html>")
        if m == "nochoices": return self._send(200, b'{"id": "x", "object": "chat.completion"}')
        text = {"judge": "**B**"}.get(m, "Please, no emojis.")
        self._send(200, json.dumps({"id": "1", "object": "chat.completion", "created": 0, "model": m, "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}).encode())
    def _send(self, code, body, headers={}):
        self.send_response(code); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items(): self.send_header(k, v)
        self.end_headers(); self.wfile.write(body)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, *a): pass


@pytest.fixture(scope="module")
def url():
    srv = QuietServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown(); srv.server_close()


def test_endpoint_answers_and_sends_the_settings(url):
    Canned.hits.clear()
    out = OpenAIChat("ok", base_url=url, concurrency=2).complete([user_messages("p q", X, Y)] * 3, max_tokens=7, temperature=0.0)
    assert out == ["Please, no emojis."] * 3
    assert Canned.hits[0]["max_tokens"] == 7 and Canned.hits[0]["temperature"] == 0.0 and "top_p" not in Canned.hits[0]
    assert Canned.hits[0]["messages"][0]["content"].startswith("USER PROFILE: p q")


def test_endpoint_retries_a_429(url):
    Canned.hits.clear()
    assert OpenAIChat("rate", base_url=url, max_retries=2).complete([X]) == ["Please, no emojis."]
    assert sum(h["model"] == "rate" for h in Canned.hits) == 2


@pytest.mark.parametrize("model,msg", [("always429", "rate-limited"), ("err500", "HTTP 500"), ("notjson", "not JSON"),
                                       ("nochoices", "not a chat completion")])
def test_endpoint_failures_are_clear_errors(url, model, msg):
    t0 = time.time()
    with pytest.raises(BackendError, match=msg): OpenAIChat(model, base_url=url, max_retries=1).complete([X])
    assert time.time() - t0 < 20


def test_endpoint_timeout_is_an_error_not_a_hang(url):
    t0 = time.time()
    with pytest.raises(BackendError, match="no answer within timeout=0.2s"):
        OpenAIChat("slow", base_url=url, timeout=0.2, max_retries=1).complete([X])
    assert time.time() - t0 < 10


def test_endpoint_unreachable_and_missing_key(monkeypatch):
    with pytest.raises(BackendError, match="cannot connect"):
        OpenAIChat("m", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2).complete([X])
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendError, match="OPENAI_API_KEY is not set"): OpenAIChat("m")


def test_llm_judge_over_the_endpoint_from_a_spec(url, tmp_path):
    spec = {"kind": "llm", "backend": "openai", "model": "judge", "base_url": url, "cache": str(tmp_path / "j.jsonl")}
    j = make_judge(spec, "no_emojis")
    assert isinstance(j, LLMJudge) and j(X, "a 🙂", "b") == "B"
    replay = make_judge({**spec, "replay": True, "base_url": url}, "no_emojis")
    assert replay(X, "a 🙂", "b") == "B"


# ---- local transformers backend ----------------------------------------------------------------------
def test_the_local_backend_inherits_nothing_from_generation_config(tiny):
    "Answers are the same whatever the model's generation_config says (Qwen3 ships top_k=20, T=0.6, top_p=0.95)."
    model, tok = tiny
    tc = TransformersChat(model, tok, batch_size=2)
    msgs = [[{"role": "user", "content": q}] for q in ("hi", "a much longer question here", "x")]
    greedy, sampled = tc.complete(msgs, max_tokens=5, temperature=0), tc.complete(msgs, max_tokens=5, temperature=1.0)
    model.generation_config.do_sample, model.generation_config.temperature = True, 0.6
    model.generation_config.top_k, model.generation_config.top_p = 20, 0.95
    try:
        assert tc.complete(msgs, max_tokens=5, temperature=0) == greedy and tc.complete(msgs, max_tokens=5, temperature=1.0) == sampled
        assert greedy[2:] == tc.complete(msgs[2:], max_tokens=5, temperature=0)   # greedy: independent of the batch it runs in
    finally:
        model.generation_config.do_sample, model.generation_config.temperature = False, 1.0
        model.generation_config.top_k, model.generation_config.top_p = 50, 1.0


def test_long_prompt_is_an_error_not_truncated(tiny):
    tc = TransformersChat(*tiny, max_context_tokens=10)
    with pytest.raises(ValueError, match="max_context_tokens=10"): tc.complete([[{"role": "user", "content": "word " * 50}]])


def test_make_backend_loads_lazily_and_once(tmp_path, tiny):
    loaded = []
    def load(name, **kw): loaded.append((name, kw)); return tiny
    spec = {"backend": "transformers", "model": "m", "dtype": "float32", "cache": str(tmp_path / "b.jsonl")}
    be = make_backend(spec, load)
    assert loaded == []
    a = be.complete([X], max_tokens=3, temperature=1.0)
    assert loaded == [("m", {"dtype": "float32"})]
    assert make_backend(spec, load).complete([X], max_tokens=3, temperature=1.0) == a and len(loaded) == 1


# ---- rule-based users and judges -----------------------------------------------------------------------
# the rule user's markdown and sign-off rules as they were: right, but quadratic on long runs of blank lines or sign-offs
OLD_MARKDOWN = re.compile(r"(^|\n)\s*(#{1,6} |[-*] |\d+\. )|\*\*")
OLD_CLOSER = re.compile(r"(hope this helps|let me know if|feel free to|happy to help|any other questions)[^.!?]*[.!?]?\W*$", re.I)
PIECES = ["\n", " ", "\t", "\r", "\u00a0", "# ", "## ", "- ", "* ", "1. ", "**", "x", "Word", ".", "!", "?", ",", "😊",
          "hope this helps", "Let me know if", "feel free to"]


@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
@settings(max_examples=400, deadline=None)
def test_one_pass_rules_read_as_the_old_ones(y):
    from hindsight_ref.simulators import _MARKDOWN, _signs_off
    assert bool(_MARKDOWN.search(y)) == bool(OLD_MARKDOWN.search(y)) and _signs_off(y) == bool(OLD_CLOSER.search(y))


RULE_OF = {"Skip the flattery": "praise", "Please don't use emojis": "emoji", "That's way too long": "long", "That's too short": "short",
           "Plain text please": "markdown", "Drop the sign-off": "sign-off"}


def test_rule_users_answer_a_huge_answer():
    "64,000 newlines, or sign-offs without an ending: each rule user answers what its rules say (bench_rule_users.py: in linear time)."
    fired = lambda p, y: [next(r for k, r in RULE_OF.items() if c.startswith(k)) for c in rule_user(p).complaints(y)]
    blank, signs, heading = "\n" * 64_000, "hope this helps " * 4_000 + ".x", "\t\n" * 32_000 + "# heading"
    assert {p: fired(p, blank) for p in RULE_PERSONAS} == {p: ["short"] if p == "detailed_professional_expert" else [] for p in RULE_PERSONAS}
    assert [fired(p, signs) for p in ("less_filler", "direct_plain", "concise_casual_beginner")] == [[], ["long"], ["long"]]
    assert fired("direct_plain", heading) == ["markdown"] and fired("less_filler", signs + " Hope this helps!") == ["sign-off"]


def test_rule_users_and_judges():
    assert rule_user("no_emojis")(X, "Nine minutes 🥚") == "Please don't use emojis."
    assert rule_user("less_filler")(X, "Great question! Nine. Let me know if you need more.") == \
        "Skip the flattery and just answer. Drop the sign-off at the end."
    j = rule_judge("concise_casual_beginner")
    short, long_, longer = "w " * 10, "w " * 70, "w " * 90
    assert [j(X, short, long_), j(X, longer, long_), j(X, short, "v " * 20)] == ["A", "B", "C"]
    assert RewardJudge(lambda p, y: 0.0, tie="A")(X, "a", "b") == "A"
    strict = make_judge({"kind": "rule", "max_words": 5}, "concise_casual_beginner")      # a judge with the user's own limit
    assert strict(X, "w " * 6, "w " * 9) == "A" and j(X, "w " * 6, "w " * 9) == "C"
    with pytest.raises(KeyError, match="known"): rule_user("nobody")


def test_make_simulator_forms():
    assert isinstance(make_simulator("rule"), RuleBasedSimulator)
    assert make_simulator({"kind": "rule", "max_words": 5})(X, "one two three four five six").startswith("That's way too long")
    assert make_simulator("hindsight_ref.simulators:RuleBasedSimulator")(X, "ok") == "Thanks, that's what I needed."
    f = lambda x, y: "o"
    assert make_simulator(f) is f
    with pytest.raises(ValueError, match="needs a persona"): make_simulator({"kind": "llm", "backend": "openai", "model": "m"})
    with pytest.raises(ValueError, match="Unknown simulator"): make_simulator("nonsense")
    with pytest.raises(ValueError, match="Unknown judge keys"): make_judge({"kind": "llm", "backend": "openai", "model": "m",
                                                                           "base_url": "http://127.0.0.1:9/v1", "tmp": 1}, "no_emojis")
