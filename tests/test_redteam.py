"""The red team's classes at toy size, each tested at the mechanism that fixes it: nothing lost, nothing stale, under reruns,
kills and odd input. (1) eval answers keyed by what they depend on; (2) answer-cache reads that never rewrite, appends that
never lose a record; (3) one output-folder guard, resume included, and a data fingerprint in checkpoints; (4) SIGTERM handled
like Ctrl-C; (5) a lock on the output folder; (6) a verdict parser that reads the decision; (7) the signal's input checks are
the trainer's; (8) non-finite config values refused, a rule user linear in its answer."""
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import warnings

import pytest

from hindsight_ref.data import Interaction, fixture_interactions, read_records, write_records

RUN = dict(model="tiny", lr=1e-3, schedule="constant", warmup_ratio=0.0, batch_size=2, grad_accum=1, max_steps=4,
           progress=False, seed=0)


@pytest.fixture(scope="module")
def fx():
    return fixture_interactions()


def trainer(tok, out, its, **kw):
    from hindsight_ref.models import tiny_model
    from hindsight_ref.train import TrainConfig
    from hindsight_ref.trainers import HindsightTrainer
    return HindsightTrainer(TrainConfig(**{**RUN, "output_dir": str(out), **kw}), *tiny_model(tokenizer=tok), interactions=its)


def steps(out) -> list[int]:
    return [r["step"] for _, r in read_records(out / "metrics.jsonl", strict=True)]


# ---- (1) eval answers keyed by prompts, judge and policy -----------------------------------------------------------------
def test_stored_eval_answers_are_reused_only_for_the_same_prompts_and_policy(tmp_path, tiny):
    from hindsight_ref.protocols import answers, cache_key
    model, tok = tiny
    xs = [[{"role": "user", "content": f"Question {i}?"}] for i in range(3)]
    other = [[{"role": "user", "content": f"Other question {i}?"}] for i in range(3)]          # same count, other content
    base, path = dict(model="tiny", max_new_tokens=2), tmp_path / "step-000000.jsonl"
    ys = answers(path, model, tok, xs, cache_key(base, 0, xs), max_new_tokens=2)
    assert answers(path, None, tok, xs, cache_key(base, 0, xs), max_new_tokens=2) == ys       # read back: no model needed
    for key in (cache_key(base, 0, other), cache_key(base, (1, "trained"), xs), cache_key({**base, "model": "x"}, 0, xs)):
        with pytest.raises(ValueError, match="holds no answers for the current prompts"):     # never the stored answers
            answers(path, None, tok, other if key == cache_key(base, 0, other) else xs, key, max_new_tokens=2)
    judge, strict = {"kind": "rule"}, {"kind": "rule", "max_words": 1}
    assert cache_key(judge, "p", "k1", "k0") != cache_key(strict, "p", "k1", "k0")             # a verdict's key holds the judge


# ---- (2) append-only cache reads; concurrent appends lose nothing --------------------------------------------------------
def _append(path, w, n):
    for i in range(n): write_records(path, {"key": f"{w}-{i}", "text": "w" * (70_000 if i % 7 == 0 else 10 + 37 * i), "writer": w})


def test_cache_keeps_a_last_record_without_newline_and_four_writers_lose_nothing(tmp_path):
    from hindsight_ref.backends import ChatCache
    f = tmp_path / "answers.jsonl"
    f.write_bytes(b'{"key": "first", "text": "kept"}')                   # complete, but no final newline
    assert ChatCache(f)["first"] == "kept" and f.read_bytes() == b'{"key": "first", "text": "kept"}'   # read, never rewritten
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append, args=(f, w, 60)) for w in range(4)]
    for p in procs: p.start()
    for p in procs: p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    with warnings.catch_warnings():
        warnings.simplefilter("error"); c = ChatCache(f)                     # no torn line
    assert len(c) == 241 and c["first"] == "kept" and all(f"{w}-{i}" in c for w in range(4) for i in range(60))


# ---- (3) one output-folder guard, resume included; a data fingerprint ----------------------------------------------------
def test_resume_from_another_runs_checkpoint_never_overwrites_a_run(tmp_path, tok, fx):
    a = trainer(tok, tmp_path / "a", fx[:4], save_every=1, max_steps=2)
    a.train(); final = a.save()
    b = trainer(tok, tmp_path / "b", fx[:4], save_every=1, max_steps=2)
    b.train(); b.save()
    ck = tmp_path / "a" / "checkpoints" / "step-000002"
    before = {p: p.read_bytes() for d in ("a", "b") for p in (tmp_path / d).rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(FileExistsError, match="already holds a run.*keep resume_from"):        # into b's finished folder
        trainer(tok, tmp_path / "b", fx[:4], save_every=1, max_steps=3, resume_from=str(ck))
    with pytest.raises(FileExistsError, match="holds a finished run.*new folder"):             # into a's own folder
        trainer(tok, tmp_path / "a", fx[:4], save_every=1, max_steps=3, resume_from=str(ck))
    with pytest.raises(FileExistsError, match="holds a finished run"):
        trainer(tok, tmp_path / "a", fx[:4], save_every=1, max_steps=3, resume_from="latest")
    assert before == {p: p.read_bytes() for p in before}                                      # nothing touched
    c = trainer(tok, tmp_path / "c", fx[:4], save_every=1, max_steps=3, resume_from=str(ck))  # a new folder: trains on
    assert c.step == 2 and len(c.train()) == 1 and (final / "train_config.yaml").read_bytes() == before[final / "train_config.yaml"]


def test_resume_after_the_data_file_changed_in_place_is_refused(tmp_path, tok, fx):
    data = tmp_path / "data.jsonl"
    write_records(data, [it.to_dict() for it in fx[:4]], append=False)
    kw = dict(data=str(data), save_every=1, max_steps=3)
    trainer(tok, tmp_path / "run", None, **kw).train(stop_after=1)
    recs = [r for _, r in read_records(data)]
    recs[2]["y"] = recs[2]["y"] + " (edited)"                                                  # same count, one answer edited
    write_records(data, recs, append=False)
    with pytest.raises(ValueError, match=r"training data changed since that checkpoint \(1 of 4 items differ.*Fix: restore"):
        trainer(tok, tmp_path / "run", None, **kw, resume_from="latest")
    write_records(data, [it.to_dict() for it in fx[:4]], append=False)                         # restored: resumes
    assert trainer(tok, tmp_path / "run", None, **kw, resume_from="latest").step == 1


# ---- (4) SIGTERM like Ctrl-C; a kill before the first checkpoint -----------------------------------------------------------
def test_sigterm_finishes_the_step_and_saves_a_checkpoint(tmp_path, tok, fx):
    from hindsight_ref.trainers import RunTerminated, checkpoints_in
    tr = trainer(tok, tmp_path / "run", fx[:8], save_every=None, max_steps=4)                    # no checkpoint of its own
    step = tr.take_step
    def step_then_term():
        rec = step()
        if tr.step == 2: os.kill(os.getpid(), signal.SIGTERM)                                 # arrives while step 2 is running
        return rec
    tr.take_step = step_then_term
    with pytest.raises(RunTerminated, match="after step 2.*resume_from: latest") as e:
        tr.train()
    assert e.value.signum == 15 and [p.name for p in checkpoints_in(tmp_path / "run")] == ["step-000002"]
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None) or callable(signal.getsignal(signal.SIGTERM))
    res = trainer(tok, tmp_path / "run", fx[:8], save_every=None, max_steps=4, resume_from="latest")
    assert res.step == 2 and [r["step"] for r in res.train()] == [3, 4] and steps(tmp_path / "run") == [1, 2, 3, 4]


def test_cli_exits_143_on_sigterm_with_how_to_resume(monkeypatch, capsys, tmp_path):
    from hindsight_ref import cli
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: tiny\noutput_dir: {tmp_path / 'run'}\n")
    def terminated(*a, **k): os.kill(os.getpid(), signal.SIGTERM); raise AssertionError("SIGTERM did not stop the command")
    monkeypatch.setattr(cli, "main_train", terminated)                                        # e.g. while the model loads
    assert cli.main(["train", str(cfg)]) == 143
    err = capsys.readouterr().err
    assert "terminated (SIGTERM)" in err and "resume_from=latest" in err
    from hindsight_ref.trainers import RunTerminated
    monkeypatch.setattr(cli, "main_train", lambda *a, **k: (_ for _ in ()).throw(RunTerminated("after step 3")))
    assert cli.main(["train", str(cfg)]) == 143 and signal.getsignal(signal.SIGTERM) is not None


def test_sigterm_on_a_real_cli_run_saves_the_step_and_exits_143(tmp_path):
    "`hindsight-ref train` with no checkpointing of its own, stopped by SIGTERM (as a scheduler does) once it has trained."
    import time
    from hindsight_ref.trainers import checkpoints_in
    cfg, run = tmp_path / "cfg.yaml", tmp_path / "run"
    cfg.write_text(f"model: tiny\nmax_steps: 10000\nbatch_size: 2\ngrad_accum: 1\nprogress: false\noutput_dir: {run}\n")
    p = subprocess.Popen([sys.executable, "-m", "hindsight_ref.cli", "train", str(cfg)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    t0 = time.time()
    while not (run / "metrics.jsonl").exists():
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < 300, "no step was logged"
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 143, (p.returncode, err)
    assert "terminated (SIGTERM)" in err and "resume_from=latest" in err and "Traceback" not in err
    (ck,) = checkpoints_in(run)
    assert ck.name in err and steps(run)[-1] == int(ck.name.removeprefix("step-"))             # every logged step is saved


def test_a_run_killed_before_its_first_checkpoint_is_rerun_consistently(tmp_path, tok, fx):
    out = tmp_path / "run"
    trainer(tok, out, fx[:6], save_every=None, max_steps=3).train(stop_after=2)                 # killed: records, no checkpoint
    with pytest.raises(FileExistsError, match=r"resume_from: latest starts that run over.*rm -r"):
        trainer(tok, out, fx[:6], save_every=None, max_steps=3)
    with pytest.warns(UserWarning, match="no checkpoint: the run starts over"):
        again = trainer(tok, out, fx[:6], save_every=None, max_steps=3, resume_from="latest")
    assert again.step == 0 and not steps(out)                                                 # the dead run's records are gone
    again.train()
    assert steps(out) == [1, 2, 3]                                                            # each step once, none mixed in


def test_records_after_the_resumed_checkpoint_are_not_duplicated(tmp_path, tok, fx):
    out = tmp_path / "run"
    trainer(tok, out, fx[:8], save_every=2, max_steps=4).train(stop_after=3)                 # killed after step 3, saved at 2
    with pytest.warns(UserWarning, match="1 record.* after step 2"):
        res = trainer(tok, out, fx[:8], save_every=2, max_steps=4, resume_from="latest")
    res.train()
    assert steps(out) == [1, 2, 3, 4]


# ---- (5) a lock on the output folder -------------------------------------------------------------------------------------
HOLD = ("import fcntl, os, socket, sys, time; fd = os.open(os.path.join(sys.argv[1], '.lock'), os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'pid {os.getpid()} on {socket.gethostname()}'.encode()); "
        "print('held', flush=True); time.sleep(120)")   # a run's lock as models.lock_folder holds it (no torch to import)


def test_a_second_run_into_a_used_folder_fails_and_a_dead_runs_lock_is_taken_over(tmp_path, tok, fx):
    from hindsight_ref.models import FolderLockedError
    out = tmp_path / "run"; out.mkdir()
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(FolderLockedError, match=rf"in use by another run \(pid {p.pid} on .*choose another output_dir"):
            trainer(tok, out, fx[:4])
        assert sorted(x.name for x in out.iterdir()) == [".lock"]                            # nothing written
        from hindsight_ref.protocols import Protocol, run_protocol                           # a protocol run there neither
        spec = Protocol(protocol="offline", train=dict(model="tiny", max_steps=1), data=dict(source="fixtures", eval_size=2),
                        eval=dict(every=1, checks=["kl_to_base"]), output_dir=str(out))
        with pytest.raises(FolderLockedError, match="in use by another protocol run"):
            run_protocol(spec, verbose=False)
        assert sorted(x.name for x in out.iterdir()) == [".lock"]
    finally:
        p.kill(); p.wait()
    with pytest.warns(UserWarning, match=rf"taking over the lock .*pid {p.pid}"):
        tr = trainer(tok, out, fx[:4])
    tr.train()
    assert steps(out) == [1, 2, 3, 4] and (out / ".lock").read_text().startswith(f"pid {os.getpid()}")
    del tr                                                                                   # a trainer holds it while it lives
    import gc; gc.collect()
    assert (out / ".lock").read_text() == ""


def test_a_folder_that_cannot_be_locked_says_so(tmp_path, monkeypatch):
    import errno, fcntl
    from hindsight_ref.models import lock_folder
    def no_flock(*a): raise OSError(errno.ENOLCK, "No locks available")                     # some network file systems
    monkeypatch.setattr(fcntl, "flock", no_flock)
    with pytest.warns(UserWarning, match="cannot lock .No locks available.; two runs started into"):
        assert lock_folder(tmp_path / "run") == tmp_path / "run" / ".lock"


# ---- (6) the verdict parser reads the decision ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, want", [
    ("Response B is worse.", "A"), ("The format says 'Output: B'. I prefer A.", "A"), ("I prefer A.", "A"),
    ("B", "B"), ("Neither is better: a tie.", "C"), ("A is better. No wait, B is better.", None),
    ("I could go either way between the two.", None), ("", None)])
def test_verdicts_are_read_from_the_decision(text, want):
    from hindsight_ref.simulators import parse_verdict
    assert parse_verdict(text) == want


def test_unparseable_verdicts_are_counted_and_reported():
    from hindsight_ref.evaluation import win_rate
    from hindsight_ref.simulators import parse_verdict
    said = iter(["I prefer A.", "Response A is worse.", "hmm", "B", "A", "B"])   # y as A for p1-p3, then y as B for p1-p3
    wr = win_rate(lambda p, a, b: parse_verdict(next(said)), ["p1", "p2", "p3"], ["y1", "y2", "y3"], ["r1", "r2", "r3"])
    assert (wr.wins, wr.losses, wr.ties, wr.unparseable) == (1, 1, 1, 1) and "1 unparseable" in repr(wr)


# ---- (7) the signal checks its input as the trainer does -------------------------------------------------------------------
def test_the_signal_refuses_what_the_trainer_refuses(tmp_path, tok):
    from hindsight_ref.data import ConversationError
    from hindsight_ref.models import tiny_model
    from hindsight_ref.signal import hindsight_signal
    it = Interaction(x=[{"role": "user", "content": "Is water wet?"}], y="Yes, water is wet.", o="One word only.")
    short, _ = tiny_model(tokenizer=tok); short.config.max_position_embeddings = 16          # fewer positions than the text
    with pytest.raises(ConversationError, match="more than the model's 16 positions"):
        hindsight_signal(short, tok, [it], progress=False)
    small, _ = tiny_model(tokenizer=tok); small.resize_token_embeddings(100)                 # another tokenizer's model
    with pytest.raises(ValueError, match="tokenizer/model mismatch"):
        hindsight_signal(small, tok, [it], progress=False)
    model, _ = tiny_model(tokenizer=tok)
    jup = Interaction(x=it.x, y="Run <jupyter_code>print(1)", o=it.o)                        # an added token of the tokenizer
    with pytest.raises(ConversationError, match="'<jupyter_code>'.*Fix: remove or escape"):
        hindsight_signal(model, tok, [jup], progress=False)
    with pytest.raises(ConversationError, match="'<jupyter_code>'"):
        trainer(tok, tmp_path / "run", [jup, it, it])


# ---- (8) non-finite config values; a rule user linear in its answer ---------------------------------------------------------
@pytest.mark.parametrize("key", ["lr", "max_grad_norm", "temperature", "ema_rate"])
def test_non_finite_config_values_are_refused(key):
    from hindsight_ref.train import TrainConfig
    for v in (math.nan, math.inf):
        with pytest.raises(ValueError, match=f"TrainConfig.{key} must be"):
            TrainConfig(**{key: v})


RULE_USERS = """
from hindsight_ref.simulators import RULE_PERSONAS, rule_user
print({p: rule_user(p).complaints("\\n" * 64_000 + "Hope this helps") for p in RULE_PERSONAS})
"""


def test_a_rule_user_answers_64000_newlines():
    "The old quadratic rules took 76 s here; the answer must come (the limit is a hang guard, 100x the old time's reach)."
    out = subprocess.run([sys.executable, "-c", RULE_USERS], capture_output=True, text=True, timeout=60)
    got = eval(out.stdout)
    assert got["detailed_professional_expert"][0].startswith("That's too short")
    assert got["less_filler"] == ["Drop the sign-off at the end."] and got["no_emojis"] == []
