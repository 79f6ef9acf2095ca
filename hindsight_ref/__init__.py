"""Aligning language models from user interactions by hindsight self-distillation: the baseline in one import.

    import hindsight_ref as hr
    model, tok = hr.tiny_model()                       # or hr.load_model("Qwen/Qwen3-0.6B")
    its = [hr.Interaction(x=[{"role": "user", "content": "Say hi."}], y="Hello!!! 😀", o="No emojis please.")]
    hr.HindsightTrainer(hr.TrainConfig(max_steps=3, output_dir="runs/hi"), model, tok, interactions=its).train()

The names load on first use (PEP 562), so importing the package, or a torch-free part of it, loads no torch.
"""
__version__ = "0.1.0"

import importlib

_BASELINE = {  # public name -> the module that defines it
    "Interaction": "data", "load_interactions": "data",
    "load_model": "models", "tiny_model": "models",
    "TrainConfig": "train", "hindsight_loss": "train", "train_step": "train",
    "hindsight_signal": "signal",
    "make_trainer": "trainers", "HindsightTrainer": "trainers", "OnlineTrainer": "trainers",
}
__all__ = ["__version__", *_BASELINE]


def __getattr__(name):
    if name not in _BASELINE: raise AttributeError(f"module 'hindsight_ref' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_BASELINE[name]}", __name__), name)
    globals()[name] = value                            # the next lookup is an ordinary attribute
    return value


def __dir__(): return sorted(__all__)
