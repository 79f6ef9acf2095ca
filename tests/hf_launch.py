"""A training run of `hindsight_ref.hf.HindsightHFTrainer` on the tiny model, for tests/test_hf.py to launch as one process
(`python tests/hf_launch.py OUT`) or several (`torchrun --standalone --nproc_per_node 2 tests/hf_launch.py OUT`).

The global batch of a step is GLOBAL_BATCH interactions whatever the number of processes (each holds GLOBAL_BATCH / 2 /
processes per micro-batch, two micro-batches). Process 0 writes OUT/result.pt: the logged losses, the gradients of
each optimizer step (after the all-reduce, before the update), the weights after each step and the final weights. `--die-after k` ends the process
hard (os._exit, as a killed job) right after the checkpoint of step k is written; `--resume DIR` resumes from it.
`--fsdp` shards the model over the processes with torch's FSDP2 `fully_shard` (each decoder layer, then the root), without
the Trainer: accelerate enables FSDP on GPUs only. Process 0 then writes the loss and the gathered gradient of one
forward and backward over the global batch, OUT/fsdp.pt."""
import argparse, os, sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from transformers import TrainerCallback

from hindsight_ref.data import fixture_interactions
from hindsight_ref.hf import HindsightHFTrainer, encode_for, training_arguments
from hindsight_ref.models import tiny_model
from hindsight_ref.train import TrainConfig

GLOBAL_BATCH, LR = 8, 1e-3


def full(t):
    "A tensor whole on every process: FSDP2's sharded DTensors are gathered (a collective, so every process calls it)."
    t = t.detach()
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).clone()


def whole(model, grads=False) -> dict:
    return {n: full(p.grad if grads else p) for n, p in model.named_parameters() if not grads or p.grad is not None}


class Record(TrainerCallback):
    "The gradients and the weights of every optimizer step; a hard exit after the checkpoint of step `die_after`."
    def __init__(self, die_after=None): self.grads, self.weights, self.die_after = [], [], die_after

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        self.grads.append(whole(model, grads=True))

    def on_optimizer_step(self, args, state, control, model=None, **kw):
        self.weights.append(whole(model))

    def on_save(self, args, state, control, **kw):
        if self.die_after is not None and state.global_step == self.die_after: os._exit(3)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--loss", default="sampled_token")
    ap.add_argument("--die-after", type=int, default=None)
    ap.add_argument("--resume", default=None)
    ap.add_argument("--fsdp", action="store_true")
    a = ap.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if a.fsdp: return fsdp_step(a.out, world)
    cfg = TrainConfig(model="tiny", loss=a.loss, lr=LR, schedule="constant", warmup_ratio=0.0,
                      batch_size=GLOBAL_BATCH // 2 // world, grad_accum=2, max_steps=a.steps, save_every=1, keep_checkpoints=0,
                      progress=False, seed=0, output_dir=a.out)
    model, tok = tiny_model(init_std=0.125, logit_scale=3.0)
    rec = Record(a.die_after)
    tr = HindsightHFTrainer(cfg, model, tok, encode_for(cfg, model, tok, fixture_interactions()[:GLOBAL_BATCH]),
                            args=training_arguments(cfg, use_cpu=True), callbacks=[rec])
    tr.train(resume_from_checkpoint=a.resume)
    final = whole(tr.model)                                       # the wrapped model: names start with "model."
    if tr.args.process_index == 0:
        torch.save(dict(losses=[r["loss"] for r in tr.state.log_history if "loss" in r], grads=rec.grads, world=world,
                        weights=rec.weights, final=final),
                   Path(a.out) / "result.pt")


def fsdp_step(out, world):
    "One forward and backward of the adapter's module over the global batch, the model fully sharded over the processes."
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from hindsight_ref.hf import HindsightCollator, HindsightModule
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    cfg = TrainConfig(model="tiny", progress=False, output_dir=out)
    model, tok = tiny_model(init_std=0.125, logit_scale=3.0)
    module = HindsightModule(model, cfg.loss_args())
    for layer in model.model.layers: fully_shard(layer)
    fully_shard(module)                                    # the root: embeddings, final norm and the (tied) LM head
    encs = encode_for(cfg, model, tok, fixture_interactions()[:GLOBAL_BATCH])
    share = encs[rank::world]                              # this process's part of the global batch
    out_ = module(**HindsightCollator(tok.pad_token_id)(share))
    loss = out_.loss.sum() * world / GLOBAL_BATCH          # what HindsightHFTrainer.compute_loss returns
    loss.backward()                                        # FSDP2 reduce-scatters the mean of the processes' gradients
    total = out_.loss.detach().sum()
    dist.all_reduce(total)
    grads = whole(module, grads=True)
    if rank == 0: torch.save(dict(loss=total.item() / GLOBAL_BATCH, grads=grads, world=world), Path(out) / "fsdp.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
