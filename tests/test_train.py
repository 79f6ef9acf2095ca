"The step and the trainers: config, schedule, exact resume, gradient accumulation, bad input, online loop, main_train."
import copy
import dataclasses
import json
import math
import sys
import warnings

import pytest
import torch

from hindsight_ref.contexts import encode_interaction, encode_interactions
from hindsight_ref.data import Interaction, fixture_interactions
from hindsight_ref.losses import AllMaskedError
from hindsight_ref.models import ModelLoadError, tiny_model
from hindsight_ref.simulators import RuleBasedSimulator
from hindsight_ref.train import (TrainConfig, evaluate_hindsight_kl, hindsight_loss, lr_factor, make_optimizer, split_heldout,
                                 step_stats, train_step)
from hindsight_ref.losses import masked_advantage
from hindsight_ref.trainers import (CheckpointError, HindsightTrainer, NonFiniteLossError, OnlineTrainer, checkpoints_in,
                                    read_metrics, recipes_dir)


@pytest.fixture(scope="module")
def fx():
    return fixture_interactions()


def reading_model(tok, seed=0):
    "The tiny model with decoder weights at 1/sqrt(d) and a sharpened output: it reads its context."
    return tiny_model(seed=seed, tokenizer=tok, init_std=0.125, logit_scale=3.0)


def cfg(tmp_path, name="run", **kw):
    base = dict(model="tiny", lr=1e-3, schedule="constant", warmup_ratio=0.0, batch_size=2, grad_accum=1, max_steps=2,
                max_grad_norm=1.0, progress=False, seed=0, output_dir=str(tmp_path / name))
    return TrainConfig(**{**base, **kw})


def weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ---- config ---------------------------------------------------------------------------------------------------
def test_config_yaml_roundtrip_and_unknown_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model: tiny\nlr: 1.0e-4\nlora: {r: 8}\n")
    c = TrainConfig.from_yaml(p, epochs=3)
    assert (c.model, c.lr, c.lora, c.epochs) == ("tiny", 1e-4, {"r": 8}, 3)
    q = tmp_path / "d.yaml"; c.to_yaml(q)
    assert TrainConfig.from_yaml(q) == c
    p.write_text("learnig_rate: 1\n")
    with pytest.raises(ValueError, match="Unknown config keys"):
        TrainConfig.from_yaml(p)
    with pytest.raises(FileNotFoundError, match="recipes"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="teacher"):
        TrainConfig(teacher="average")


def test_paper_defaults():
    c = TrainConfig()
    assert (c.lr, c.schedule, c.warmup_ratio, c.batch_size * c.grad_accum, c.epochs) == (2e-6, "cosine", 0.05, 32, 2)
    assert (c.loss, c.teacher, c.center, c.clip_advantage, c.ignore_first_k, c.alpha) == ("sampled_token", "live", False, None, 0, 1.0)
    assert (c.max_grad_norm, c.ref_kl, c.temperature, c.top_p, c.sample_top_k) == (None, 0.0, 1.0, 1.0, None)   # the paper: none of these
    assert c.length_norm   # the one official-code default: token mean per sequence (the paper's lrs were tuned with it)


@pytest.mark.parametrize("bad, msg", [(dict(lr="fast"), "TrainConfig.lr must be float"), (dict(batch_size=2.5), "batch_size must be int"),
                                      (dict(epochs="two"), "epochs must be int"), (dict(max_steps=0), "max_steps must be >= 1"),
                                      (dict(lr=0.0), "lr must be > 0"), (dict(top_p=0.0), "top_p must be > 0"),
                                      (dict(progress="no"), "progress must be bool"), (dict(lora=[4]), "lora must be dict"),
                                      (dict(betas=[0.9]), "betas must be two numbers"), (dict(template="nope"), "Unknown template"),
                                      (dict(on_bad_record="ignore"), "on_bad_record must be one of")])
def test_config_types_and_ranges_are_checked_before_loading(bad, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(")):
        TrainConfig(**bad)


@pytest.mark.parametrize("old, new", [("topk", "loss_topk"), ("top_k", "sample_top_k"), ("gradient_checkpointing", "activation_checkpointing"),
                                      ("checkpoint", "activation_checkpointing")])
def test_old_config_names_name_the_new_one(tmp_path, old, new):
    p = tmp_path / "old.yaml"
    p.write_text(f"{old}: 1\n")
    with pytest.raises(ValueError, match=f"TrainConfig key '{old}' is now '{new}'"):
        TrainConfig.from_yaml(p)


@pytest.mark.parametrize("mode, new", [("speed", "step_mode: fused"), ("memory", "step_mode: fused with activation_checkpointing: full")])
def test_old_step_modes_name_the_new_setting(mode, new):
    with pytest.raises(ValueError, match=f"step_mode: {mode} is now {new}"):
        TrainConfig(step_mode=mode)


@pytest.mark.parametrize("key, value", [("lr", "nan"), ("lr", "inf"), ("max_grad_norm", "nan"), ("temperature", "inf")])
def test_non_finite_config_values_are_refused(tmp_path, key, value):
    p = tmp_path / "c.yaml"
    p.write_text(f"{key}: .{value}\n")                       # YAML's NaN and infinity
    with pytest.raises(ValueError, match=f"TrainConfig.{key} must be"):
        TrainConfig.from_yaml(p)


def test_config_widens_and_reads_yaml_numbers(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lr: 1e-5\nmax_grad_norm: 1\n")           # YAML 1.1 reads 1e-5 as a string, 1 as an int
    c = TrainConfig.from_yaml(p)
    assert c.lr == 1e-5 and isinstance(c.max_grad_norm, float)


def test_every_recipe_loads():
    "Every shipped recipe is a valid training config, or a protocol (32_protocols) whose train section is one."
    import yaml
    from hindsight_ref.protocols import Protocol
    names = sorted(p.name for p in recipes_dir().glob("*.yaml"))
    assert "offline_paper.yaml" in names and "online_tldr.yaml" in names
    for p in recipes_dir().glob("*.yaml"):
        if "protocol" in (yaml.safe_load(p.read_text()) or {}): Protocol.from_yaml(p)
        else: TrainConfig.from_yaml(p)


def test_schedules():
    f = [lr_factor(s, 100, 5) for s in range(100)]
    assert f[:5] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert f[5] == pytest.approx(1.0) and f[-1] < 1e-3
    assert all(a >= b for a, b in zip(f[5:], f[6:]))
    assert lr_factor(52, 100, 5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 47 / 95)))
    assert {lr_factor(s, 100, 0, "constant") for s in range(100)} == {1.0}


def test_optimizer_choices(tmp_path):
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert type(make_optimizer(p, cfg(tmp_path), "cpu")) is torch.optim.AdamW            # auto on CPU
    if "bitsandbytes" not in sys.modules:
        try: import bitsandbytes  # noqa: F401
        except ImportError:
            with pytest.raises(ImportError, match="pip install bitsandbytes"):
                make_optimizer(p, cfg(tmp_path, optimizer="adamw_8bit"), "cuda")
            assert type(make_optimizer(p, cfg(tmp_path), "cuda")) is torch.optim.AdamW  # auto falls back


def test_lora_without_peft_names_the_fix(tmp_path, tok, fx, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)           # as if peft were not installed
    m, t = tiny_model(tokenizer=tok)
    with pytest.raises(ImportError, match="pip install peft"):
        HindsightTrainer(cfg(tmp_path, lora={"r": 4}), m, t, interactions=fx[:2])


def test_heldout_split_keeps_conversations_apart(fx):
    tr, ho = split_heldout(fx, 10, seed=1)
    assert len(ho) >= 10 and len(tr) + len(ho) == len(fx)
    assert not {i.meta["conversation_id"] for i in tr} & {i.meta["conversation_id"] for i in ho}


# ---- acceptance 2: a handful of steps lowers the hindsight KL, also held out -----------------------------------------
def test_hindsight_kl_falls_on_train_and_heldout(tmp_path, tok, fx):
    m, t = reading_model(tok)
    tr = HindsightTrainer(cfg(tmp_path, batch_size=4, max_steps=6, eval_size=6), m, t, interactions=fx[:24])
    probe = tr.encoded[:8]
    before = (evaluate_hindsight_kl(tr.model, probe, tr.pad_id), evaluate_hindsight_kl(tr.model, tr.eval_encoded, tr.pad_id))
    tr.train()
    after = (evaluate_hindsight_kl(tr.model, probe, tr.pad_id), evaluate_hindsight_kl(tr.model, tr.eval_encoded, tr.pad_id))
    assert before[0] > 0.01 and before[1] > 0.01
    assert after[0] < 0.7 * before[0] and after[1] < 0.7 * before[1]


# ---- acceptance 3: kill and resume == uninterrupted ----------------------------------------------------------------------
@pytest.mark.parametrize("teacher", ["ema"])   # the EMA teacher adds its own state to what the live one needs
def test_resume_is_exact(tmp_path, tok, fx, teacher):
    kw = dict(schedule="cosine", warmup_ratio=0.2, batch_size=2, grad_accum=2, epochs=2, max_steps=None, save_every=2,
              teacher=teacher, seed=3)
    data = fx[:10]                                           # 5 micro-batches -> 3 steps per epoch, 6 steps
    full = HindsightTrainer(cfg(tmp_path, "a", **kw), *reading_model(tok), interactions=data)
    full.train()
    part = HindsightTrainer(cfg(tmp_path, "b", **kw), *reading_model(tok), interactions=data)
    part.train(stop_after=4)
    del part
    res = HindsightTrainer(cfg(tmp_path, "b", resume_from="latest", **kw), *reading_model(tok), interactions=data)
    assert (res.step, res.epoch, res.step_in_epoch) == (4, 1, 1)
    res.train()
    wa, wb = weights(full.model), weights(res.model)
    assert full.step == res.step == 6
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
    if teacher == "ema":
        assert all(torch.equal(p, q) for p, q in zip(full.teacher.parameters(), res.teacher.parameters()))
    la, lb = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]   # same six steps, logged once each


def test_online_resume_is_exact(tmp_path, tok, fx):
    "The sampled completions depend on the RNG state: the checkpoint restores it."
    kw = dict(mode="online", batch_size=2, max_steps=3, save_every=1, max_new_tokens=6, seed=5)
    xs = [it.x for it in fx[:6]]
    sim = RuleBasedSimulator(max_words=3)
    full = OnlineTrainer(cfg(tmp_path, "a", **kw), *reading_model(tok), prompts=xs, simulator=sim)
    full.train()
    part = OnlineTrainer(cfg(tmp_path, "b", **kw), *reading_model(tok), prompts=xs, simulator=sim)
    part.train(stop_after=2)
    res = OnlineTrainer(cfg(tmp_path, "b", resume_from="latest", **kw), *reading_model(tok), prompts=xs, simulator=sim)
    res.train()
    wa, wb = weights(full.model), weights(res.model)
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
    ya = [json.loads(l)["y"] for l in (tmp_path / "a" / "interactions.jsonl").read_text().splitlines()]
    yb = [json.loads(l)["y"] for l in (tmp_path / "b" / "interactions.jsonl").read_text().splitlines()]
    assert ya == yb and len(ya) <= 6


def test_resume_on_other_data_is_refused(tmp_path, tok, fx):
    a = HindsightTrainer(cfg(tmp_path, save_every=1, max_steps=1), *reading_model(tok), interactions=fx[:4])
    a.train()
    with pytest.raises(ValueError, match="different data"):
        HindsightTrainer(cfg(tmp_path, save_every=1, max_steps=1, resume_from="latest"), *reading_model(tok), interactions=fx[:6])


def test_a_used_output_dir_is_never_overwritten(tmp_path, tok, fx):
    a = HindsightTrainer(cfg(tmp_path, save_every=1), *reading_model(tok), interactions=fx[:4])
    a.train(); a.save()
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="already holds a run .*final.*new output_dir"):
        HindsightTrainer(cfg(tmp_path), *reading_model(tok), interactions=fx[:4])
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("change, allowed", [(dict(lr=5e-3), False), (dict(batch_size=4), False), (dict(teacher="ema"), False),
                                             (dict(progress=True, save_every=3, log_every=2), True)])
def test_resume_with_a_changed_config(tmp_path, tok, fx, change, allowed):
    a = HindsightTrainer(cfg(tmp_path, save_every=1, max_steps=3), *reading_model(tok), interactions=fx[:6])
    a.train(stop_after=1)
    make = lambda: HindsightTrainer(cfg(tmp_path, **{**dict(save_every=1, max_steps=3, resume_from="latest"), **change}),
                                    *reading_model(tok), interactions=fx[:6])
    if allowed: assert make().step == 1
    else:
        with pytest.raises(ValueError, match=f"{next(iter(change))}: "):
            make()


def test_a_broken_checkpoint_falls_back_to_the_previous_one(tmp_path, tok, fx):
    a = HindsightTrainer(cfg(tmp_path, save_every=1, max_steps=3, keep_checkpoints=3), *reading_model(tok), interactions=fx[:6])
    a.train(stop_after=2)
    newest = checkpoints_in(tmp_path / "run")[-1]
    (newest / "state.pt").write_bytes((newest / "state.pt").read_bytes()[:500])          # truncated
    (tmp_path / "run" / "checkpoints" / "step-000009.tmp").mkdir()                       # a stale unfinished one
    with pytest.warns(UserWarning, match="Falling back"):
        b = HindsightTrainer(cfg(tmp_path, save_every=1, max_steps=3, keep_checkpoints=3, resume_from="latest"),
                             *reading_model(tok), interactions=fx[:6])
    assert b.step == 1
    with pytest.raises(CheckpointError, match=str(newest.name)):
        HindsightTrainer(cfg(tmp_path, save_every=1, max_steps=3, keep_checkpoints=3, resume_from=str(newest)),
                         *reading_model(tok), interactions=fx[:6])


def test_keep_checkpoints_ignores_unfinished_ones(tmp_path, tok, fx):
    "A stale step-N.tmp (a write that was killed) neither counts toward keep_checkpoints nor gets resumed from."
    tr = HindsightTrainer(cfg(tmp_path, save_every=1, max_steps=3, keep_checkpoints=2), *reading_model(tok), interactions=fx[:6])
    tr.train(stop_after=1)
    (tmp_path / "run" / "checkpoints" / "step-000099.tmp").mkdir()
    tr.train()
    assert [p.name for p in checkpoints_in(tmp_path / "run")] == ["step-000002", "step-000003"]


def test_a_full_disk_is_named(tmp_path, tok, fx, monkeypatch):
    tr = HindsightTrainer(cfg(tmp_path, save_every=1, max_steps=1), *reading_model(tok), interactions=fx[:4])
    def full(*a, **k): raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file: basic_ios::clear")
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match="GiB free"):
        tr.train()
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))


# ---- the step is what it claims --------------------------------------------------------------------------------------------
def test_gradient_accumulation_matches_one_big_batch(tmp_path, tok, fx):
    "batch 4 x accumulation 1 == batch 2 x accumulation 2 (same interactions in the step, same mean over sequences)."
    a = HindsightTrainer(cfg(tmp_path, "a", batch_size=4, grad_accum=1, max_steps=1, optimizer="adamw", lr=0.1,
                             max_grad_norm=None), *reading_model(tok), interactions=fx[:5])
    b = HindsightTrainer(cfg(tmp_path, "b", batch_size=2, grad_accum=2, max_steps=1, optimizer="adamw", lr=0.1,
                             max_grad_norm=None), *reading_model(tok), interactions=fx[:5])
    ra, rb = a.train()[0], b.train()[0]
    # the loss is built from float32 log-probs of size up to log V (about 11 here); the two runs pad to different shapes,
    # so each kernel sums in its own order: tolerate 1e-5 of log V (float32 eps is 1.2e-7; with ATEN_CPU_CAPABILITY=default
    # and one thread the two losses differed by 2.3e-6)
    tol = 1e-5 * math.log(len(tok))
    assert ra["loss"] == pytest.approx(rb["loss"], abs=tol) and ra["n_seqs"] == rb["n_seqs"] == 4
    # compare the first Adam moments, which are (1 - beta1) * gradient
    ga = [a.opt.state[p]["exp_avg"] for p in a.opt.param_groups[0]["params"]]
    gb = [b.opt.state[p]["exp_avg"] for p in b.opt.param_groups[0]["params"]]
    scale = max(x.abs().max().item() for x in ga)
    assert scale > 0 and max((x - y).abs().max().item() for x, y in zip(ga, gb)) < 1e-5 * scale   # float32 summation order


def test_gradient_checkpointing_gives_the_same_step(tmp_path, tok, fx):
    a = HindsightTrainer(cfg(tmp_path, "a", max_steps=1), *reading_model(tok), interactions=fx[:4])
    b = HindsightTrainer(cfg(tmp_path, "b", max_steps=1, activation_checkpointing="full"), *reading_model(tok), interactions=fx[:4])
    a.train(); b.train()
    ga = [a.opt.state[p]["exp_avg"] for p in a.opt.param_groups[0]["params"]]   # (1 - beta1) * gradient
    gb = [b.opt.state[p]["exp_avg"] for p in b.opt.param_groups[0]["params"]]
    scale = max(x.abs().max().item() for x in ga)
    assert scale > 0 and max((x - y).abs().max().item() for x, y in zip(ga, gb)) < 1e-5 * scale


def test_the_step_is_the_thirty_line_loop(tok, fx):
    "hindsight_loss == -(A * log p_student) token-mean per sequence, in value and gradient; the anchor adds beta * KL."
    from hindsight_ref.contexts import collate
    from hindsight_ref.signal import batch_logprobs
    from hindsight_ref.losses import distill_loss
    m, _ = reading_model(tok)
    b = collate(encode_interactions(tok, fx[:6]), tok.pad_token_id)
    c = TrainConfig(model="tiny")
    out = hindsight_loss(m, b, **c.loss_args())
    lib, st = out.loss, step_stats(out)
    ls = batch_logprobs(m, b, "student"); lt = batch_logprobs(m, b, "teacher").detach(); mk = b["loss_mask"]
    loop = -((lt - ls.detach()) * ls * mk).sum(-1) / mk.sum(-1)
    torch.testing.assert_close(lib, loop, rtol=1e-5, atol=1e-6)
    params = list(m.parameters())
    g1, g2 = torch.autograd.grad(lib.mean(), params), torch.autograd.grad(loop.mean(), params)
    scale = max(g.abs().max().item() for g in g2)
    assert max((x - y).abs().max().item() for x, y in zip(g1, g2)) < 1e-4 * scale
    # the anchor: + beta * KL(student || reference), computed here from full logits
    ref, _ = reading_model(tok, seed=1)
    anchored = hindsight_loss(m, b, ref=ref, **dataclasses.replace(c, ref_kl=2.0).loss_args()).loss
    L, T = b["student_context_len"], b["completion_ids"].shape[1]
    logits = lambda model: model(input_ids=b["student_input_ids"], attention_mask=b["student_attention_mask"],
                                 position_ids=b["student_position_ids"]).logits[:, L - 1:L - 1 + T]
    kl = distill_loss(logits(m), logits(ref).detach(), mk, reduction="none")
    torch.testing.assert_close(anchored, lib + 2.0 * kl, rtol=1e-5, atol=1e-5)
    same = hindsight_loss(m, b, ref=copy.deepcopy(m), **dataclasses.replace(c, ref_kl=2.0).loss_args()).loss
    torch.testing.assert_close(same, lib, rtol=1e-5, atol=1e-6)        # zero against an identical reference
    assert st["n_seqs"] == 6 and st["mean_abs_A"] > 0
    torch.testing.assert_close(out.advantage, masked_advantage(out.logp_teacher, out.logp_student, out.mask), rtol=0, atol=0)


@pytest.mark.parametrize("kw", [dict(loss="full"), dict(loss="topk", loss_topk=8, alpha=0.5), dict(loss="topk", alpha=0.0, teacher="frozen"),
                                dict(center=True, clip_advantage=2.0, ignore_first_k=2)])
def test_loss_options_train(tmp_path, tok, fx, kw):
    tr = HindsightTrainer(cfg(tmp_path, **kw), *reading_model(tok), interactions=fx[:4])
    w0 = weights(tr.model)
    recs = tr.train()
    assert all(math.isfinite(r["loss"]) and not r["skipped"] for r in recs)
    assert any(not torch.equal(w0[n], p) for n, p in tr.model.named_parameters())
    if kw.get("teacher") == "frozen":
        assert all(torch.equal(w0[n], p) for n, p in tr.teacher.named_parameters())


def test_metrics_and_save_pretrained(tmp_path, tok, fx):
    from transformers import AutoModelForCausalLM
    tr = HindsightTrainer(cfg(tmp_path), *reading_model(tok), interactions=fx[:4])
    tr.train()
    recs = read_metrics(tmp_path / "run")
    assert [r["step"] for r in recs] == [1, 2]
    assert {"loss", "mean_A", "mean_abs_A", "grad_norm", "lr", "tokens_per_s", "skipped"} <= set(recs[0])
    p = tr.save()
    m = AutoModelForCausalLM.from_pretrained(p)
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in m.state_dict().items())
    assert (p / "train_config.yaml").exists() and (p / "tokenizer_config.json").exists()


def test_main_train_from_yaml(tmp_path):
    from hindsight_ref.cli import main_train
    tr = main_train(recipes_dir() / "smoke_tiny.yaml", output_dir=str(tmp_path / "smoke"), progress=False)
    assert tr.step == 2 and (tmp_path / "smoke" / "final" / "config.json").exists()
    assert len(read_metrics(tmp_path / "smoke")) == 2


# ---- acceptance 4: bad input ---------------------------------------------------------------------------------------------------
def test_empty_dataset(tmp_path, tok):
    with pytest.raises(ValueError, match="training set is empty"):
        HindsightTrainer(cfg(tmp_path), *tiny_model(tokenizer=tok), interactions=[])
    with pytest.raises(ValueError, match="no contexts"):
        OnlineTrainer(cfg(tmp_path, mode="online"), *tiny_model(tokenizer=tok), prompts=[])


def test_all_masked_everywhere(tmp_path, tok, fx):
    with pytest.raises(AllMaskedError, match="ignore_first_k"):
        HindsightTrainer(cfg(tmp_path, ignore_first_k=10_000), *tiny_model(tokenizer=tok), interactions=fx[:4]).train()


def test_all_masked_batch_names_the_interactions(tmp_path, tok, fx, monkeypatch):
    "A step whose completions are all shorter than ignore_first_k is an error naming them, not a silent no-op."
    short = [Interaction(x=[{"role": "user", "content": f"Question {i}?"}], y="Yes.", o="Thanks.",
                         meta={"conversation_id": f"short-{i}", "turn": 1}) for i in range(2)]
    k = len(encode_interaction(tok, short[0]).completion_ids)          # "Yes." + end of turn
    long = [it for it in fx if len(encode_interaction(tok, it).completion_ids) > k + 5][:2]
    c = cfg(tmp_path, ignore_first_k=k, batch_size=2, grad_accum=1, epochs=1, max_steps=None)
    import hindsight_ref.trainers as trainers_mod
    monkeypatch.setattr(trainers_mod, "epoch_order", lambda n, seed, epoch: list(range(n)))   # the two short ones in one step
    tr = HindsightTrainer(c, *tiny_model(tokenizer=tok), interactions=short + long)
    with pytest.raises(AllMaskedError, match="short-0#turn1"):
        tr.train()


def _poisoned(tok, fx):
    bad = Interaction(x=[{"role": "user", "content": "Say something."}], y="Here: §", o="Thanks.",
                      meta={"conversation_id": "poisoned", "turn": 1})
    others = encode_interactions(tok, fx[:3])
    marker = min(set(encode_interaction(tok, bad).completion_ids) - {t for e in others for t in e.student_ids + e.teacher_ids})
    m, t = reading_model(tok)
    def hook(mod, inp, out):
        rows = (inp[0] == marker).any(-1)
        if rows.any(): out = out.clone(); out[rows] = float("nan")
        return out
    m.get_input_embeddings().register_forward_hook(hook)
    return m, t, fx[:3] + [bad]


def test_nan_loss_is_skipped_and_reported(tmp_path, tok, fx):
    m, t, data = _poisoned(tok, fx)
    tr = HindsightTrainer(cfg(tmp_path, batch_size=4, max_steps=2), m, t, interactions=data)
    w0 = weights(tr.model)
    with pytest.warns(UserWarning, match="poisoned#turn1"):
        rec = tr.train(stop_after=1)[0]
    assert rec["skipped"] and "poisoned#turn1" in rec["problem"] and math.isnan(rec["loss"])
    assert all(torch.equal(w0[n], p) for n, p in tr.model.named_parameters())       # no update at all
    assert read_metrics(tmp_path / "run")[0]["skipped"]


def test_nan_loss_stops_naming_the_interaction(tmp_path, tok, fx):
    m, t, data = _poisoned(tok, fx)
    tr = HindsightTrainer(cfg(tmp_path, batch_size=4, max_steps=1, nan_policy="stop"), m, t, interactions=data)
    with pytest.raises(NonFiniteLossError, match="poisoned#turn1"):
        tr.train()


@pytest.mark.parametrize("kw", [dict(), dict(loss="full"), dict(loss="full", alpha=0.0), dict(length_norm=False, center=True, clip_advantage=1.0),
                                dict(activation_checkpointing="full"), dict(activation_checkpointing="selective", checkpoint_fraction=0.5)])
def test_the_fused_step_computes_the_reference_step(tmp_path, tok, fx, kw):
    """step_mode: fused (with or without activation checkpointing) takes the reference step: per-sequence loss, gradient (the
    first Adam moments), metrics and A, for every loss the fused head computes; float32 sums in another order: relative 1e-5."""
    runs = {}
    for mode in ("reference", "fused"):
        extra = {k: v for k, v in kw.items() if mode == "fused" or "checkpoint" not in k}
        tr = HindsightTrainer(cfg(tmp_path, mode, max_steps=1, grad_accum=2, optimizer="adamw", step_mode=mode, **extra),
                              *reading_model(tok), interactions=fx[:4])
        runs[mode] = tr, tr.train()[0]
    (a, ra), (b, rb) = runs["reference"], runs["fused"]
    ma = [a.opt.state[p]["exp_avg"] for p in a.opt.param_groups[0]["params"]]
    mb = [b.opt.state[p]["exp_avg"] for p in b.opt.param_groups[0]["params"]]
    scale = max(x.abs().max().item() for x in ma)
    assert scale > 0 and max((x - y).abs().max().item() for x, y in zip(ma, mb)) < 1e-5 * scale
    assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5, abs=1e-7) and rb["n_tokens"] == ra["n_tokens"]
    assert rb["mean_A"] == pytest.approx(ra["mean_A"], rel=1e-5, abs=1e-7) and rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-5)


def test_the_fused_step_refuses_what_it_does_not_compute(tok, fx):
    from hindsight_ref.contexts import collate
    m, _ = reading_model(tok)
    b = collate(encode_interactions(tok, fx[:2]), tok.pad_token_id)
    for bad in (dict(ref_kl=1.0), dict(loss="topk"), dict(loss="full", alpha=0.5), dict(loss="sft")):
        with pytest.raises(ValueError, match="step_mode: reference"):
            TrainConfig(step_mode="fused", **bad)
        with pytest.raises(ValueError, match="step_mode: reference"):
            hindsight_loss(m, b, ref=m, fused=True, **bad)
    with pytest.raises(ValueError, match="alpha=1"):
        hindsight_loss(m, b, alpha=0.5)


def test_train_step_skips_a_non_finite_loss_and_names_it(tok, fx):
    "A non-finite loss in micro-batch 1, row 0: no update at all, the result says where; a finite step updates."
    from hindsight_ref.contexts import collate
    m, _ = reading_model(tok)
    batches = [collate(encode_interactions(tok, fx[k:k + 2]), tok.pad_token_id) for k in (0, 2)]
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    w0 = weights(m)
    def poisoned(model, batch):
        out = hindsight_loss(model, batch)
        return out._replace(loss=out.loss * torch.tensor([float("nan"), 1.0])) if batch is batches[1] else out
    res = train_step(m, opt, batches, poisoned)
    assert res.nonfinite == (1, [0]) and math.isnan(res.loss) and res.grad_norm is None
    assert all(torch.equal(w0[n], p) for n, p in m.named_parameters()) and all(p.grad is None for p in m.parameters())
    res = train_step(m, opt, batches, hindsight_loss, max_grad_norm=1e-3)
    assert res.nonfinite is None and math.isfinite(res.loss) and res.grad_norm > 1e-3 and len(res.outs) == 2
    assert not res.outs[0].loss.requires_grad and any(not torch.equal(w0[n], p) for n, p in m.named_parameters())


def test_a_run_that_ends_diverged_is_an_error_not_a_result(tmp_path, tok, fx):
    "lr=1e10: the run must not end 'successfully' with a broken model."
    tr = HindsightTrainer(cfg(tmp_path, lr=1e10, max_steps=3, max_grad_norm=None, optimizer="adamw"), *reading_model(tok),
                          interactions=fx[:4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NonFiniteLossError, match="diverged"):
            tr.train()
    with pytest.raises(NonFiniteLossError, match="not saved"):
        tr.save()


def test_repeated_nan_stops_the_run(tmp_path, tok, fx):
    m, t, data = _poisoned(tok, fx)
    tr = HindsightTrainer(cfg(tmp_path, batch_size=4, max_steps=5, max_skipped_steps=3), m, t, interactions=data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(NonFiniteLossError, match="3 steps in a row"):
            tr.train()


def test_vocabulary_smaller_than_the_tokenizer(tmp_path, tok, fx):
    m, _ = tiny_model(tokenizer=tok)
    m.resize_token_embeddings(1000)
    with pytest.raises(ValueError, match="embedding table only 1000 rows"):
        HindsightTrainer(cfg(tmp_path), m, tok, interactions=fx[:2])


def test_model_without_chat_template(tmp_path, tok, fx):
    t = copy.deepcopy(tok); t.chat_template = None
    m, _ = tiny_model(tokenizer=tok)
    with pytest.raises(ModelLoadError, match="no chat template"):
        HindsightTrainer(cfg(tmp_path), m, t, interactions=fx[:2])


# ---- online ------------------------------------------------------------------------------------------------------------------------
def _spy_online(monkeypatch):
    "Record every sampling call (its contexts and what it sampled) and every batch the loss scores."
    import hindsight_ref.sampling as sampling_mod, hindsight_ref.trainers as trainers_mod
    sampled, scored = [], []
    real_sample, real_loss = sampling_mod.sample_completions, trainers_mod.hindsight_loss
    def sample(model, tok_, xs, *a, **k):
        s_ = real_sample(model, tok_, xs, *a, **k)
        sampled.append((list(xs), s_)); return s_
    def loss(model, batch, **k):
        scored.append({n: v.detach().cpu() if torch.is_tensor(v) else v for n, v in batch.items()}); return real_loss(model, batch, **k)
    monkeypatch.setattr(sampling_mod, "sample_completions", sample)
    monkeypatch.setattr(trainers_mod, "hindsight_loss", loss)
    return sampled, scored


def _rows(batch, side="student"):
    "(context ids, completion ids) of each row of a collated batch, padding removed."
    L, att = batch[f"{side}_context_len"], batch[f"{side}_attention_mask"].bool()
    return [(batch[f"{side}_input_ids"][r, :L][att[r, :L]].tolist(), batch["completion_ids"][r][batch["completion_mask"][r]].tolist())
            for r in range(len(att))]


def test_online_trainer_scores_exactly_the_sampled_ids(tmp_path, tok, fx, monkeypatch):
    "The loss sees each sampled context and completion id for id (no decode and re-encode of y), and the teacher sees the same y."
    sampled, scored = _spy_online(monkeypatch)
    xs = [it.x for it in fx[:6]]
    tr = OnlineTrainer(cfg(tmp_path, mode="online", batch_size=2, grad_accum=2, max_steps=None, epochs=1, max_new_tokens=12),
                       *tiny_model(tokenizer=tok), prompts=xs, simulator=lambda x, y: "Shorter please.")
    tr.train()
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    drawn = sorted((list(s.context_ids[k]), list(s.completion_ids[k])) for _, s in sampled for k in range(len(s))
                   if tok.decode([t for t in s.completion_ids[k] if t != eot], skip_special_tokens=True).strip())
    seen = sorted(row for b in scored for row in _rows(b))
    assert len(drawn) + tr.n_empty == len(xs) and seen == drawn
    assert all(row[1] == t_row[1] for b in scored for row, t_row in zip(_rows(b), _rows(b, "teacher")))
    # the test can fail: some sampled completions encode to other ids once decoded (a random model draws any id sequence)
    retok = [tok(tok.decode(c, skip_special_tokens=True).strip(), add_special_tokens=False)["input_ids"] + ([eot] if c[-1] == eot else [])
             for _, c in drawn]
    assert any(r != c for r, (_, c) in zip(retok, drawn))


def test_online_trainer_visits_each_context_once_per_pass(tmp_path, tok, fx, monkeypatch):
    "One epoch over 6 contexts in micro-batches of 2: each is sampled exactly once, and each interaction logged once."
    sampled, _ = _spy_online(monkeypatch)
    xs = [it.x for it in fx[:6]]
    assert len({json.dumps(x) for x in xs}) == len(xs)
    tr = OnlineTrainer(cfg(tmp_path, mode="online", batch_size=2, grad_accum=1, max_steps=None, epochs=1, max_new_tokens=8),
                       *reading_model(tok), prompts=xs, simulator=lambda x, y: "Shorter please.")
    recs = tr.train()
    assert len(recs) == 3 and all(math.isfinite(r["loss"]) for r in recs)
    visited = sorted(json.dumps(x) for xs_, _ in sampled for x in xs_)
    assert visited == sorted(json.dumps(x) for x in xs)
    logged = [json.loads(l) for l in (tmp_path / "run" / "interactions.jsonl").read_text().splitlines()]
    assert len(logged) + tr.n_empty == len(xs) and len({json.dumps(r["x"]) for r in logged}) == len(logged)
    assert all(r["o"] == "Shorter please." and 0 < r["n_tokens"] <= 8 for r in logged)


def test_online_step_with_only_empty_samples_says_so(tmp_path, tok, fx, monkeypatch):
    "A step where the model ends its turn at once everywhere is an error about empty samples, not about ignore_first_k."
    import hindsight_ref.sampling as sampling_mod
    from hindsight_ref.sampling import Samples
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    def only_end_of_turn(model, tok_, xs, *a, **k):
        n = len(xs)
        return Samples([[1]] * n, [[eot]] * n, [True] * n, [torch.zeros(1)] * n, [torch.zeros(1)] * n)
    monkeypatch.setattr(sampling_mod, "sample_completions", only_end_of_turn)
    tr = OnlineTrainer(cfg(tmp_path, mode="online", batch_size=2, max_new_tokens=4), *reading_model(tok),
                       prompts=[fx[0].x, fx[1].x], simulator=lambda x, y: "ok")
    with pytest.raises(ValueError, match="sampled completions was empty"):
        tr.train()


def test_users_with_a_batch_method_answer_the_whole_batch(tmp_path, tok, fx):
    calls = []
    class Batched:
        def __call__(self, x, y): raise AssertionError("the trainer must use many()")
        def many(self, xs, ys): calls.append(len(xs)); return ["Shorter."] * len(xs)
    tr = OnlineTrainer(cfg(tmp_path, mode="online", batch_size=2, max_new_tokens=6, max_steps=1), *reading_model(tok),
                       prompts=[fx[0].x, fx[1].x], simulator=Batched())
    tr.train()
    assert calls and sum(calls) + tr.n_empty == 2


def test_bad_simulator_output(tmp_path, tok, fx):
    tr = OnlineTrainer(cfg(tmp_path, mode="online", max_new_tokens=4), *reading_model(tok), prompts=[fx[0].x, fx[1].x],
                       simulator=lambda x, y: "")
    with pytest.raises(ValueError, match="simulator returned"):
        tr.train()
    with pytest.raises(TypeError, match=r"make_simulator\('rule'\)"):      # a spec is resolved above the trainers (the CLI)
        OnlineTrainer(cfg(tmp_path, "spec", mode="online"), *reading_model(tok), prompts=[fx[0].x], simulator="rule")
