"""A training run of `hindsight_ref.hf.HindsightHFTrainer` on the tiny model, for tests/test_hf.py to launch as one process
(`python tests/hf_launch.py OUT`) or several (`torchrun --standalone --nproc_per_node 2 tests/hf_launch.py OUT`).

The global batch of a step is GLOBAL_BATCH interactions whatever the number of processes (each holds GLOBAL_BATCH / 2 /
processes per micro-batch, two micro-batches). Process 0 writes OUT/result.pt: the logged losses, the gradients of
each optimizer step (after the all-reduce, before the update), the weights after each step and the final weights. `--die-after k` ends the process
hard (os._exit, as a killed job) right after the checkpoint of step k is written; `--resume DIR` resumes from it."""
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


class Record(TrainerCallback):
    "The gradients and the weights of every optimizer step; a hard exit after the checkpoint of step `die_after`."
    def __init__(self, die_after=None): self.grads, self.weights, self.die_after = [], [], die_after

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        self.grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})

    def on_optimizer_step(self, args, state, control, model=None, **kw):
        self.weights.append({n: p.detach().clone() for n, p in model.named_parameters()})

    def on_save(self, args, state, control, **kw):
        if self.die_after is not None and state.global_step == self.die_after: os._exit(3)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--loss", default="sampled_token")
    ap.add_argument("--die-after", type=int, default=None)
    ap.add_argument("--resume", default=None)
    a = ap.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = TrainConfig(model="tiny", loss=a.loss, lr=LR, schedule="constant", warmup_ratio=0.0,
                      batch_size=GLOBAL_BATCH // 2 // world, grad_accum=2, max_steps=a.steps, save_every=1, keep_checkpoints=0,
                      progress=False, seed=0, output_dir=a.out)
    model, tok = tiny_model(init_std=0.125, logit_scale=3.0)
    rec = Record(a.die_after)
    tr = HindsightHFTrainer(cfg, model, tok, encode_for(cfg, model, tok, fixture_interactions()[:GLOBAL_BATCH]),
                            args=training_arguments(cfg, use_cpu=True, save_only_model=False), callbacks=[rec])
    tr.train(resume_from_checkpoint=a.resume)
    if tr.args.process_index == 0:
        torch.save(dict(losses=[r["loss"] for r in tr.state.log_history if "loss" in r], grads=rec.grads, world=world,
                        weights=rec.weights, final={n: p.detach().clone() for n, p in model.named_parameters()}),
                   Path(a.out) / "result.pt")


if __name__ == "__main__":
    main()
