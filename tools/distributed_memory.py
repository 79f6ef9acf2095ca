"""The memory table of docs/distributed.md: GB per GPU of a full fine-tune under each launcher config of
hindsight_ref/launch/, from the library's estimator (`protocols.estimate_resources`), and which config to pick.

Run `python tools/distributed_memory.py` to print the table; tests/test_hf.py checks that the page holds it unchanged.
These are estimates (see the page for the model behind them) until measured on the GPUs."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from hindsight_ref.models import ARCHITECTURES
from hindsight_ref.protocols import estimate_resources, n_params

MODELS = ["qwen3-0.6b", "qwen3-4b", "qwen3-8b"]
GPUS = [1, 2, 4, 8]
GPU_GB = 80.0                 # an 80 GB GPU (H100, A100-80GB)
HEADROOM = 0.9                # use at most 90 % of it (allocator fragmentation, CUDA context)
MICRO_BATCH, MAX_LEN = 2, 4096  # interactions per forward pass per GPU; context + completion tokens (2048 + 2048)
ADAMW, ADAMW_8BIT = 8, 2      # optimizer-state bytes per parameter


def dims(name: str) -> dict:
    "The estimator's shape of a published architecture (models.ARCHITECTURES)."
    c = ARCHITECTURES[name].config
    return dict(hidden=c["hidden_size"], layers=c["num_hidden_layers"], ffn=c["intermediate_size"], vocab=c["vocab_size"],
                heads=c["num_attention_heads"], kv_heads=c["num_key_value_heads"], head_dim=c["head_dim"],
                tied=c["tie_word_embeddings"])


def per_gpu(name: str, gpus: int, sharded: bool, optimizer_bytes: int = ADAMW) -> float:
    """GB on each GPU. Replicated (one GPU): float32 weights, gradients, optimizer state and activations of one
    micro-batch; DDP adds its gradient buckets, a second copy of the gradients that the all-reduce works on. Sharded (FSDP full shard, ZeRO-3): weights, gradients and state divided by the GPUs, plus the
    activations, plus what is gathered whole at a time: the root (embeddings and an untied LM head) and two decoder layers
    (the one computing and the one prefetched), counted in float32."""
    d = dims(name)
    e = estimate_resources(d, MICRO_BATCH, MAX_LEN, MAX_LEN // 2, 1, optimizer_bytes=optimizer_bytes)
    state = e["weights_gb"] + e["grads_gb"] + e["optimizer_gb"]
    if not sharded: return state + e["activations_gb"] + (e["grads_gb"] if gpus > 1 else 0.0)
    root = d["vocab"] * d["hidden"] * (1 if d["tied"] else 2)
    layer = (n_params(d) - root) / d["layers"]
    return state / gpus + e["activations_gb"] + 4 * (root + 2 * layer) / 1e9


def pick(name: str, gpus: int) -> str:
    "The config to pick on `gpus` GPUs of GPU_GB: replicas when they fit (fastest), else sharding, else less state."
    fits = lambda gb: gb <= HEADROOM * GPU_GB
    if gpus == 1:
        if fits(per_gpu(name, 1, False)): return "one device (no launcher)"
        if fits(per_gpu(name, 1, False, ADAMW_8BIT)): return "one device, `optimizer: adamw_8bit`"
        return "does not fit: LoRA (`lora:`) or more GPUs"
    if fits(per_gpu(name, gpus, False)): return "`ddp.yaml`"
    if fits(per_gpu(name, gpus, True)): return "`fsdp.yaml` (or `zero3.yaml`)"
    return "`zero3.yaml` with the optimizer offloaded to the CPU (zero3.json), or LoRA"


def table() -> str:
    "The markdown table of the page."
    rows = ["| model | params | GPUs | replicated (DDP) GB/GPU | sharded (FSDP, ZeRO-3) GB/GPU | pick (80 GB GPUs) |",
            "|---|---|---|---|---|---|"]
    for name in MODELS:
        for g in GPUS:
            sharded = "n/a" if g == 1 else f"{per_gpu(name, g, True):.0f}"
            rows.append(f"| {name} | {n_params(dims(name)) / 1e9:.1f}B | {g} | {per_gpu(name, g, False):.0f} | {sharded} | "
                        f"{pick(name, g)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
