"""The single-GPU training configuration, exercised on the CPU: bf16 autocast, gradient checkpointing and LoRA (peft) on a
toy Qwen3 through the library's trainer; the loss falls, the saved adapter reloads and gives the same outputs; the fused
step agrees with the reference step in that configuration; 8-bit AdamW where bitsandbytes and CUDA exist."""
import importlib.util, math
import pytest, torch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("peft") is None,
                                reason="peft is not installed (a dev dependency: `make env` or `pip install peft`)")

LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}


@pytest.fixture(scope="module")
def qwen_toy():
    "A toy Qwen3 (2 layers, real tokenizer) initialised so that it reads its context (larger init std)."
    from hindsight_ref.models import random_model
    return lambda: random_model("qwen3-0.6b", toy=True, seed=0, initializer_range=0.1)


@pytest.fixture(scope="module")
def data():
    from hindsight_ref.data import fixture_interactions
    return fixture_interactions()[:8]


def _cfg(tmp_path, **kw):
    from hindsight_ref.train import TrainConfig
    base = dict(model="qwen3-toy", loss="full", lr=1e-2, schedule="constant", warmup_ratio=0.0, batch_size=4, grad_accum=1,
                max_steps=8, max_grad_norm=1.0, optimizer="adamw", device="cpu", bf16=True, activation_checkpointing="full", lora=LORA,
                progress=False, seed=0, output_dir=str(tmp_path))
    return TrainConfig(**{**base, **kw})


def test_lora_gc_bf16_trains_and_the_adapter_reloads(qwen_toy, data, tmp_path):
    from peft import PeftModel
    from hindsight_ref.trainers import make_trainer
    model, tok = qwen_toy()
    tr = make_trainer(_cfg(tmp_path), model=model, tok=tok, interactions=data)
    assert isinstance(tr.model, PeftModel) and tr.bf16
    layers = tr.model.get_decoder().layers
    assert all(l.gradient_checkpointing for l in layers) and tr.model.training
    trainable = [n for n, p in tr.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    before = tr.evaluate()
    recs = tr.train()
    after = tr.evaluate()
    assert all(math.isfinite(r["loss"]) and not r["skipped"] for r in recs)
    assert after < 0.8 * before, (before, after)                  # the hindsight KL on the training interactions falls
    path = tr.save()
    base, _ = qwen_toy()
    loaded = PeftModel.from_pretrained(base, str(path)).eval()
    ids = tok("The sea is wide", return_tensors="pt")["input_ids"]
    tr.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, tr.model(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
        untrained = qwen_toy()[0](input_ids=ids).logits
        assert not torch.allclose(untrained, loaded(input_ids=ids).logits, atol=1e-4)   # the adapter carries the training


def test_fused_step_in_the_single_gpu_configuration(qwen_toy, data):
    "bf16 autocast + checkpointing + LoRA: the fused step's loss and LoRA gradients agree with the reference step's."
    from hindsight_ref.train import apply_lora, configure_step, hindsight_loss
    from hindsight_ref.contexts import encode_interactions, collate
    model, tok = qwen_toy()
    model = configure_step(apply_lora(model, LORA), "fused", "full").train()
    batch = collate(encode_interactions(tok, data[:4]), tok.pad_token_id)
    res = {}
    for name in ("reference", "fused"):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            per_seq = hindsight_loss(model, batch, loss="sampled_token", fused=name == "fused").loss
        per_seq.mean().backward()
        res[name] = per_seq.detach().float(), torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    (l0, g0), (l1, g1) = res["reference"], res["fused"]
    assert g0.numel() == g1.numel() > 0
    assert ((l1 - l0).norm() / l0.norm()).item() < 1e-2 and ((g1 - g0).norm() / g0.norm()).item() < 2e-2


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None,
                    reason="8-bit AdamW needs bitsandbytes and a CUDA device; neither a CUDA device nor bitsandbytes here")
def test_adamw_8bit_runs_on_cuda(qwen_toy, data, tmp_path):
    from hindsight_ref.trainers import make_trainer
    model, tok = qwen_toy()
    tr = make_trainer(_cfg(tmp_path, device="cuda", optimizer="adamw_8bit", max_steps=2), model=model.cuda(), tok=tok,
                      interactions=data)
    assert type(tr.opt).__name__ == "AdamW8bit"
    assert all(math.isfinite(r["loss"]) for r in tr.train())
