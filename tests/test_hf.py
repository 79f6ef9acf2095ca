"""hindsight_ref.hf: the library's step inside transformers' Trainer. Two processes (torchrun, gloo) take the step one
process takes over the same global batch; a run killed after a checkpoint and resumed by the Trainer ends where an
uninterrupted one does; every loss variant of the single-device step runs through the adapter unchanged; and the
library's sampled-token, full-vocabulary and top-k losses agree with TRL's self-distillation losses."""
import os, subprocess, sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "tests" / "hf_launch.py"
U = 2.0 ** -24           # float32 unit roundoff
EPS = 1e-8               # AdamW's epsilon
LR = 1e-3                # tests/hf_launch.py's learning rate


def launch(out, *args, procs=1, expect_rc=0):
    "Run tests/hf_launch.py as `procs` processes (torchrun --standalone for more than one); its result.pt."
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] if procs > 1
           else [sys.executable]) + [str(LAUNCH), str(out), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == expect_rc, r.stdout[-3000:] + r.stderr[-3000:]
    return torch.load(Path(out) / "result.pt") if expect_rc == 0 else None


def loss_tol(x):
    "A logged loss sums a few hundred token terms of order one; another summation order moves it by a few hundred roundings."
    return 256 * U * max(1.0, abs(x))


def adam_tol(grads, delta):
    "Per weight: AdamW moves w by about lr g / (|g| + eps); a gradient off by delta moves it by at most lr delta / (|g| + eps)."
    return {n: LR * torch.clamp(4 * delta / (g.abs() + EPS), max=2.0) for n, g in grads.items()}


def assert_weights_close(w, ref, tol):
    for n in ref:
        bound = tol[n] + 4 * U * ref[n].abs() if n in tol else 4 * U * ref[n].abs()
        bad = (w[n] - ref[n]).abs() > bound
        assert not bad.any(), f"{n}: {int(bad.sum())} weights differ beyond the float32 bound (max {(w[n] - ref[n]).abs().max():.2e})"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    "Two optimizer steps over a global batch of 8 on one process, a checkpoint after each step."
    return launch(tmp_path_factory.mktemp("one") / "run")


def test_two_processes_take_the_step_of_one(one_process, tmp_path):
    two = launch(tmp_path / "run", procs=2)
    one = one_process
    assert two["world"] == 2 and one["world"] == 1 and len(one["losses"]) == len(two["losses"]) == 2
    for a, b in zip(one["losses"], two["losses"]):
        assert abs(a - b) <= loss_tol(a), (one["losses"], two["losses"])
    g1, g2 = one["grads"][0], two["grads"][0]                    # step 1: both start from the same weights
    assert g1.keys() == g2.keys() and max(g.abs().max().item() for g in g1.values()) > 1e-3   # a real gradient
    delta = 64 * U * max(g.abs().max().item() for g in g1.values())
    for n in g1: assert (g1[n] - g2[n]).abs().max() <= delta, n
    assert_weights_close(two["weights"][0], one["weights"][0], adam_tol(g1, delta))


def test_fully_sharded_the_teacher_pass_sees_the_students_weights(one_process, tmp_path):
    "FSDP2 full shard over two processes: each pass gathers the same sharded weights, so loss and gradient are one process's."
    subprocess_out = tmp_path / "run"; subprocess_out.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(LAUNCH),
                        str(subprocess_out), "--fsdp"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    sharded, one = torch.load(subprocess_out / "fsdp.pt"), one_process
    assert sharded["world"] == 2 and abs(sharded["loss"] - one["losses"][0]) <= loss_tol(one["losses"][0])
    g1 = one["grads"][0]
    delta = 64 * U * max(g.abs().max().item() for g in g1.values())
    assert sharded["grads"].keys() == g1.keys()
    for n in g1: assert (sharded["grads"][n] - g1[n]).abs().max() <= delta, n


def test_the_comparison_can_fail(one_process):
    "Weights moved by 4e-5, a twenty-fifth of one AdamW step, are outside the tolerance."
    g = one_process["grads"][0]
    delta = 64 * U * max(v.abs().max().item() for v in g.values())
    moved = {n: w + 4 * LR * 1e-2 for n, w in one_process["weights"][0].items()}
    with pytest.raises(AssertionError, match="differ beyond"):
        assert_weights_close(moved, one_process["weights"][0], adam_tol(g, delta))


def test_a_killed_run_resumes_from_the_trainers_checkpoint(one_process, tmp_path):
    out = tmp_path / "run"
    launch(out, "--die-after", "1", expect_rc=3)                 # exits hard right after checkpoint-1 is written
    assert (out / "checkpoint-1" / "optimizer.pt").exists() and not (out / "checkpoint-2").exists()
    resumed = launch(out, "--resume", str(out / "checkpoint-1"))
    assert len(resumed["grads"]) == 1                            # it took only the missing step
    assert abs(resumed["losses"][-1] - one_process["losses"][-1]) <= loss_tol(one_process["losses"][-1])
    g = one_process["grads"][1]
    delta = 64 * U * max(v.abs().max().item() for v in g.values())
    assert_weights_close(resumed["final"], one_process["final"], adam_tol(g, delta))


# ---- the adapter passes every loss variant of the single-device step through ------------------------------------------
VARIANTS = [dict(loss="sampled_token"), dict(loss="sampled_token", center=True, clip_advantage=2.0, ignore_first_k=2),
            dict(loss="full", alpha=1.0), dict(loss="full", alpha=0.0, length_norm=False), dict(loss="full", alpha=0.5),
            dict(loss="topk", loss_topk=8), dict(loss="topk", loss_topk=8, add_tail=False, alpha=0.5), dict(loss="sft"),
            dict(loss="sampled_token", ref_kl=0.1), dict(loss="full", ref_kl=0.1, chunk_size=16),
            dict(loss="sampled_token", step_mode="fused"), dict(loss="full", alpha=0.0, step_mode="fused")]


@pytest.fixture(scope="module")
def fx():
    from hindsight_ref.data import fixture_interactions
    return fixture_interactions()[:6]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={w}" for k, w in v.items()))
def test_every_loss_variant_is_the_librarys_loss(variant, tok, fx, tmp_path):
    "compute_loss over one micro-batch = the library's per-sequence losses of the same config, summed, over N sequences."
    import copy
    from hindsight_ref.hf import HindsightHFTrainer, encode_for, training_arguments
    from hindsight_ref.contexts import collate
    from hindsight_ref.models import tiny_model
    from hindsight_ref.train import TrainConfig, hindsight_loss
    cfg = TrainConfig(model="tiny", progress=False, output_dir=str(tmp_path / "run"), batch_size=3, **variant)
    model, _ = tiny_model(tokenizer=tok, init_std=0.125, logit_scale=3.0)
    before = copy.deepcopy(model)
    encs = encode_for(cfg, model, tok, fx)
    tr = HindsightHFTrainer(cfg, model, tok, encs, args=training_arguments(cfg, use_cpu=True))
    batch = tr.data_collator(encs[:3])
    n = tr._get_num_items_in_batch([batch, tr.data_collator(encs[3:])], "cpu")
    assert int(n) == 6
    got = tr.compute_loss(tr.model, batch, num_items_in_batch=n)
    ref = copy.deepcopy(before).requires_grad_(False) if cfg.ref_kl else None
    want = hindsight_loss(before, collate(encs[:3], tok.pad_token_id, cfg.ignore_first_k), ref=ref, **cfg.loss_args()).loss
    assert torch.allclose(got, want.sum() / 6, rtol=64 * U, atol=64 * U), (got, want.sum() / 6)
    got.backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_only_the_offline_live_teacher_setting(tok, fx, tmp_path):
    from hindsight_ref.hf import HindsightHFTrainer
    from hindsight_ref.models import tiny_model
    from hindsight_ref.train import TrainConfig
    for kw, what in ((dict(teacher="ema"), "live stop-gradient teacher"), (dict(mode="online"), "offline")):
        cfg = TrainConfig(model="tiny", progress=False, output_dir=str(tmp_path / "run"), **kw)
        with pytest.raises(ValueError, match=what): HindsightHFTrainer(cfg, *tiny_model(tokenizer=tok), [])


def test_without_accelerate_the_import_error_names_the_extra():
    code = "import sys; sys.modules['accelerate'] = None\ntry:\n    import hindsight_ref.hf\nexcept ImportError as e: print(e)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    assert 'pip install "hindsight_ref[hf]"' in out, out


# ---- an independent implementation: TRL's self-distillation losses --------------------------------------------------
# TRL (trl.experimental.sdft / sdpo loss_utils, the same functions in both) computes each loss from full logits per token;
# GKDTrainer.generalized_jsd_loss is its older full-vocabulary JSD. The library computes them from hidden states in
# chunks (20_losses). Same convention: alpha 1 is KL(student || teacher), 0 is KL(teacher || student), in between the
# generalized JSD with mixture (1 - alpha) student + alpha teacher; top-k on the student's k most likely tokens.
def _trl():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.sdft import loss_utils
    from trl.experimental.gkd import GKDTrainer
    return loss_utils, GKDTrainer.generalized_jsd_loss


def _per_seq(per_token, mask, length_norm=True):
    s = (per_token * mask).sum(-1)
    return s / mask.sum(-1).clamp(min=1) if length_norm else s


def _tol(ls, lt):
    "A divergence sums V terms p (log p - log q); float32 sums of V terms err by ~log2(V) roundings of the terms' total size."
    V = ls.shape[-1]
    size = ((ls.exp() + lt.exp()) * (ls - lt).abs()).sum(-1).max().item()      # the largest sum of |terms| at one position
    return 32 * U * torch.log2(torch.tensor(float(V))).item() * max(1.0, size)


def _logits(seed=0, B=3, T=7, V=50):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(B, T, V, generator=g) * 3, torch.randn(B, T, V, generator=g) * 3
    mask = torch.ones(B, T, dtype=torch.bool); mask[1, 5:] = False; mask[2, :2] = False
    return s, t, mask


@pytest.mark.parametrize("alpha", [1.0, 0.0, 0.3])
def test_full_vocabulary_matches_trl_and_gkd(alpha):
    from hindsight_ref.losses import distill_loss
    lu, gkd_jsd = _trl()
    s, t, mask = _logits()
    ours = distill_loss(s, t, mask, alpha=alpha, reduction="none")
    trl_tok = lu.compute_full_logit_self_distillation_loss(s, t, distillation_alpha=alpha)
    labels = torch.where(mask, 0, -100)
    gkd_tok = torch.zeros_like(trl_tok); gkd_tok[mask] = gkd_jsd(s, t, labels=labels, beta=alpha, reduction="none").sum(-1)
    tol = _tol(s.log_softmax(-1), t.log_softmax(-1))
    assert torch.allclose(ours, _per_seq(trl_tok, mask), atol=tol, rtol=0)
    assert torch.allclose(ours, _per_seq(gkd_tok, mask), atol=tol, rtol=0)
    assert not torch.allclose(ours, distill_loss(s, t, mask, alpha=1 - alpha if alpha != 0.5 else 0.9, reduction="none"), atol=tol)


@pytest.mark.parametrize("add_tail", [True, False])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_topk_matches_trl(add_tail, alpha):
    from hindsight_ref.losses import distill_loss
    lu, _ = _trl()
    s, t, mask = _logits(seed=1)
    ours = distill_loss(s, t, mask, alpha=alpha, topk=5, add_tail=add_tail, reduction="none")
    theirs = lu.compute_topk_self_distillation_loss(s, t, distillation_topk=5, distillation_alpha=alpha,
                                                    distillation_add_tail=add_tail)
    assert torch.allclose(ours, _per_seq(theirs, mask), atol=_tol(s.log_softmax(-1), t.log_softmax(-1)), rtol=0)


def test_sampled_token_matches_trl_values_and_gradients():
    "TRL's token loss is stopgrad(log p_s - log p_t) * log p_s = -A log p_s (Eq. 8): the same value and gradient."
    from hindsight_ref.losses import sampled_token_loss
    lu, _ = _trl()
    s, t, mask = _logits(seed=2)
    ids = torch.randint(0, s.shape[-1], mask.shape, generator=torch.Generator().manual_seed(3))
    s1, s2 = s.clone().requires_grad_(), s.clone().requires_grad_()
    pick = lambda z: z.log_softmax(-1).gather(-1, ids[..., None])[..., 0]
    ours = sampled_token_loss(pick(s1), pick(t), mask, reduction="none")
    theirs = _per_seq(lu.compute_sampled_token_self_distillation_loss(s2, t, ids, distillation_alpha=1.0), mask)
    tol = 64 * U * max(1.0, (pick(s) - pick(t)).abs().max().item() * pick(s).abs().max().item())
    assert torch.allclose(ours, theirs, atol=tol, rtol=0)
    ours.sum().backward(); theirs.sum().backward()
    assert torch.allclose(s1.grad, s2.grad, atol=tol, rtol=0) and s1.grad.abs().max() > 1e-3
    with pytest.raises(ValueError, match="alpha"):
        lu.compute_sampled_token_self_distillation_loss(s, t, ids, distillation_alpha=0.5)


@pytest.mark.parametrize("variant", [dict(loss="sampled_token"), dict(loss="full", alpha=1.0), dict(loss="full", alpha=0.5),
                                     dict(loss="topk", loss_topk=20)], ids=lambda v: "-".join(map(str, v.values())))
def test_hindsight_loss_on_the_tiny_model_matches_trl(variant, tok, fx):
    "The library's chunked hindsight_loss on real student and teacher passes = TRL on the model's full logits."
    from hindsight_ref.contexts import collate, encode_interactions, end_of_turn_id
    from hindsight_ref.models import tiny_model
    from hindsight_ref.train import TrainConfig, hindsight_loss
    lu, _ = _trl()
    model, _ = tiny_model(tokenizer=tok, init_std=0.125, logit_scale=3.0)
    cfg = TrainConfig(model="tiny", chunk_size=16, **variant)
    b = collate(encode_interactions(tok, fx[:3], eot_id=end_of_turn_id(tok)), tok.pad_token_id)
    ours = hindsight_loss(model, b, **cfg.loss_args()).loss
    T = b["completion_ids"].shape[1]
    def logits(side):
        L = b[f"{side}_context_len"]
        z = model(input_ids=b[f"{side}_input_ids"], attention_mask=b[f"{side}_attention_mask"],
                  position_ids=b[f"{side}_position_ids"]).logits
        return z[:, L - 1:L - 1 + T].float()
    s = logits("student")
    with torch.no_grad(): t = logits("teacher")
    mask = b["loss_mask"]
    if cfg.loss == "sampled_token":
        tok_loss = lu.compute_sampled_token_self_distillation_loss(s, t, b["completion_ids"], distillation_alpha=1.0)
    elif cfg.loss == "full": tok_loss = lu.compute_full_logit_self_distillation_loss(s, t, distillation_alpha=cfg.alpha)
    else: tok_loss = lu.compute_topk_self_distillation_loss(s, t, distillation_topk=cfg.loss_topk, distillation_alpha=cfg.alpha,
                                                            distillation_add_tail=cfg.add_tail)
    theirs = _per_seq(tok_loss, mask)
    tol = _tol(s.log_softmax(-1), t.log_softmax(-1)) * (16 if cfg.loss == "sampled_token" else 1)
    assert torch.allclose(ours, theirs, atol=tol, rtol=0), (ours, theirs, tol)
    assert ours.abs().max() > 10 * tol                     # a loss far from zero, so agreement means something


# ---- the launcher configurations: each accepted by accelerate as `accelerate launch --config_file` reads it -----------
LAUNCH_DIR = ROOT / "hindsight_ref" / "launch"


@pytest.mark.parametrize("name,kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("zero3", "DEEPSPEED")])
def test_launcher_configs_are_accepted_by_accelerate(name, kind, monkeypatch):
    "Parsed by accelerate's config loader, validated as `accelerate launch` validates it, and turned into its plugin."
    import json
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env
    monkeypatch.chdir(ROOT)                                         # zero3.yaml names its json relative to the repository
    path = f"hindsight_ref/launch/{name}.yaml"
    cfg = load_config_from_file(path)
    assert cfg.distributed_type == kind and cfg.mixed_precision == "bf16" and not cfg.use_cpu
    args = launch_command_parser().parse_args(["--config_file", path, "--num_processes", "4", "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    assert (args.multi_gpu, args.use_fsdp, args.use_deepspeed) == (kind == "MULTI_GPU", kind == "FSDP", kind == "DEEPSPEED")
    if kind == "DEEPSPEED":
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)   # as launch_command sets it
        _, env = prepare_deepspeed_cmd_env(args)
    else: env = prepare_multi_gpu_env(args)
    for k, v in env.items(): monkeypatch.setenv(k, v)
    if kind == "FSDP":
        plugin = FullyShardedDataParallelPlugin()
        assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True      # full shard
        assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    if kind == "DEEPSPEED":
        plugin = DeepSpeedPlugin()
        assert plugin.zero_stage == 3 and plugin.hf_ds_config.is_zero3()
        ds = json.loads((LAUNCH_DIR / "zero3.json").read_text())
        assert ds["zero_optimization"]["stage"] == 3
        assert all(ds[k] == "auto" for k in ("gradient_accumulation_steps", "gradient_clipping", "train_micro_batch_size_per_gpu"))


def test_the_fsdp_auto_wrap_finds_the_decoder_layers_through_the_adapter(tok):
    "accelerate's transformer auto-wrap reads _no_split_modules from the module it wraps: the adapter passes the model's on."
    from accelerate.utils import FullyShardedDataParallelPlugin
    from hindsight_ref.hf import HindsightModule
    from hindsight_ref.models import tiny_model
    model, _ = tiny_model(tokenizer=tok)
    module = HindsightModule(model, {})
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    plugin.set_auto_wrap_policy(module)
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    wrapped = [m for m in module.modules() if plugin.auto_wrap_policy(m, False, 0)]
    assert len(wrapped) == len(model.model.layers)


def test_the_docs_page_holds_the_estimators_table():
    "docs/distributed.md shows exactly what tools/distributed_memory.py computes, and the pick follows the numbers."
    sys.path.insert(0, str(ROOT / "tools"))
    import distributed_memory as dm
    page = (ROOT / "docs" / "distributed.md").read_text()
    assert dm.table() in page, "docs/distributed.md is stale: paste the output of `python tools/distributed_memory.py`"
    assert "estimates until measured" in page and "cannot run here" in page
    assert dm.pick("qwen3-0.6b", 4) == "`ddp.yaml`" and dm.pick("qwen3-8b", 8).startswith("`fsdp.yaml`")
    assert dm.per_gpu("qwen3-8b", 8, True) < dm.per_gpu("qwen3-8b", 4, True) < dm.per_gpu("qwen3-8b", 1, False)
    # 16 bytes a parameter is the replicated state: the estimator's weights, gradients and AdamW moments
    assert abs(dm.per_gpu("qwen3-8b", 1, False) - 16 * 8.19 - 7.7) < 1.0
