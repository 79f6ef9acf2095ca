"Protocols from YAML: validation, prompts, the personalization engine (phases, references, resume), offline runs, every recipe at toy size."
import copy
import json

import pytest

from hindsight_ref.protocols import (H200, Protocol, estimate_resources, make_prompts, n_params, run_personalization, run_protocol)
from hindsight_ref.evaluation import plot_win_curves
from hindsight_ref.trainers import recipes_dir
from hindsight_ref.data import read_records

TINY_TRAIN = dict(model="tiny", lr=1e-3, schedule="constant", warmup_ratio=0.0, batch_size=2, grad_accum=1, max_new_tokens=8,
                  center=True, max_grad_norm=1.0, keep_checkpoints=1)


def test_protocol_validation():
    with pytest.raises(ValueError, match="Unknown config keys"): Protocol(train={"learnrate": 1}, phases=[{"persona": "x", "steps": 1}])
    with pytest.raises(ValueError, match="needs phases"): Protocol(train={})
    with pytest.raises(ValueError, match="Each phase"): Protocol(phases=[{"persona": "x", "steps": 0}])
    with pytest.raises(ValueError, match="eval.reference"): Protocol(phases=[{"persona": "x", "steps": 1}], eval={"reference": "last"})
    with pytest.raises(ValueError, match="protocol must be"): Protocol(protocol="online")


def test_protocol_file_unknown_key(tmp_path):
    (tmp_path / "p.yaml").write_text("protocol: offline\ntrian: {}\n")
    with pytest.raises(ValueError, match=r"Unknown protocol keys \['trian'\]"): Protocol.from_yaml(tmp_path / "p.yaml")


def test_prompts_are_disjoint_and_seeded():
    a, b = make_prompts("fixtures", 6, 4, seed=1)
    assert not {x[-1]["content"] for x in a} & {x[-1]["content"] for x in b}
    assert make_prompts("fixtures", 6, 4, seed=1) == (a, b) and make_prompts("fixtures", 6, 4, seed=2) != (a, b)
    with pytest.raises(ValueError, match="Unknown prompt source"): make_prompts("nowhere")


def test_held_out_prompts_come_from_the_validation_split(monkeypatch):
    import hindsight_ref.protocols as P
    pools = {"train": [f"t{k}" for k in range(10)] + ["Seen  before"], "validation": ["seen before"] + [f"v{k}" for k in range(5)]}
    monkeypatch.setattr(P, "prompt_texts", lambda source, split="train", max_chars=None: list(pools[split]))
    tr, ev = P.make_prompts("tldr", train_n=6, eval_n=5)
    assert {x[-1]["content"][0] for x in tr} <= {"t", "S"} and sorted(x[-1]["content"] for x in ev) == [f"v{k}" for k in range(5)]
    assert tr[0][0] == {"role": "system", "content": P.TLDR_SYSTEM}
    with pytest.raises(ValueError, match="5 held-out prompts"): P.make_prompts("tldr", train_n=6, eval_n=6)   # a training prompt is not one


def test_tldr_length_limit_counts_the_suffix(monkeypatch):
    import datasets
    from hindsight_ref.protocols import TLDR_SUFFIX, prompt_texts
    rows = [{"info": {"post": "a" * 1015}}, {"info": {"post": "b" * 1016}}, {"info": {"post": "a" * 1015}}]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: rows)
    assert [len(p) for p in prompt_texts("tldr", "validation")] == [1015] and len("a" * 1015 + TLDR_SUFFIX) == 1023


BOTH = ["concise_casual_beginner", "detailed_professional_expert"]


def _flip(out, **kw):
    d = dict(train=TINY_TRAIN, prompts=dict(source="fixtures", train_n=4, eval_n=2),
             phases=[{"persona": "concise_casual_beginner", "steps": 1}, {"persona": "detailed_professional_expert", "steps": 1}],
             user={"kind": "rule"}, judge={"kind": "rule"}, eval=dict(every=1, max_new_tokens=8, personas=BOTH), output_dir=str(out))
    d.update(kw)
    return Protocol(**d)


def test_personalization_switches_the_user_and_resumes(tmp_path):
    full = run_personalization(_flip(tmp_path / "a"), verbose=False)
    assert [(r["step"], r["persona"]) for r in full] == [(s, p) for s in (0, 1, 2) for p in ("concise_casual_beginner",
                                                                                            "detailed_professional_expert")]
    logged = [json.loads(l) for l in (tmp_path / "a" / "train" / "interactions.jsonl").read_text().split("\n") if l.strip()]
    phase2 = [r["o"] for r in logged if r["step"] == 2]
    assert phase2 and all("too short" in o for o in phase2)                     # the detailed user in phase 2
    assert all("too short" not in r["o"] for r in logged if r["step"] == 1)
    # interrupted after phase 1, then resumed: the same records
    run_personalization(_flip(tmp_path / "b", phases=_flip(tmp_path).phases[:1]), verbose=False)
    assert json.dumps(run_personalization(_flip(tmp_path / "b"), verbose=False)) == json.dumps(full)
    ax = plot_win_curves(full, boundaries=[2]); assert ax.get_xlabel() == "interactions"


def _counts(recs): return [(r["step"], r["persona"], r["wins"], r["losses"], r["ties"]) for r in recs]


def test_a_changed_judge_or_eval_prompt_set_is_a_cache_miss(tmp_path):
    "A rerun after changing the judge or the held-out prompts gives what a fresh run gives, never the stored curves."
    one = lambda out, **kw: _flip(out, **{"phases": [{"persona": "concise_casual_beginner", "steps": 1}], "train": {**TINY_TRAIN, "lr": 0.05},
                                          "prompts": dict(source="fixtures", train_n=4, eval_n=6), **kw})
    first = run_personalization(one(tmp_path / "r"), verbose=False)
    strict = {"kind": "rule", "max_words": 1}                        # prefers the shorter answer wherever the lengths differ
    again, fresh = (run_personalization(one(tmp_path / d, judge=strict), verbose=False) for d in ("r", "f"))
    assert _counts(again) == _counts(fresh) != _counts(first)
    assert [json.loads(l)["key"] for l in (tmp_path / "r" / "curves.jsonl").read_text().splitlines()] == [r["key"] for r in again]
    fewer = dict(source="fixtures", train_n=4, eval_n=5)               # the same training prompts, other held-out prompts
    again, fresh = (run_personalization(one(tmp_path / d, judge=strict, prompts=fewer), verbose=False) for d in ("r", "g"))
    assert _counts(again) == _counts(fresh) and all(r["wins"] + r["losses"] + r["ties"] == 5 for r in again)
    xs = lambda d: [r["x"] for _, r in read_records(tmp_path / d / "eval" / "step-000001.jsonl")]
    assert xs("r") == xs("g") and len(xs("r")) == 5
    with pytest.raises(ValueError, match="trained on other inputs"):   # a checkpoint trained with another user is not reused
        run_personalization(one(tmp_path / "r", judge=strict, prompts=fewer, user={"kind": "rule", "max_words": 3}), verbose=False)


def test_a_changed_check_set_is_run_again(tmp_path):
    base = dict(protocol="offline", train=dict(model="tiny", lr=1e-3, schedule="constant", warmup_ratio=0.0, batch_size=2, grad_accum=1,
                                               max_steps=1), data=dict(source="fixtures", eval_size=2), output_dir=str(tmp_path))
    run_protocol(Protocol(**base, eval=dict(every=1, checks=["kl_to_base"])), verbose=False)
    rep = run_protocol(Protocol(**base, eval=dict(every=1, checks=["kl_to_base", "perplexity"])), verbose=False)
    assert {r["name"] for r in rep["comparison"]} == {"kl_to_base", "perplexity", "hindsight_kl"}
    assert all(r["before"] == r["before"] and r["after"] == r["after"] for r in rep["comparison"] if r["name"] == "perplexity")   # not NaN


def test_reference_phase_start_judges_each_persona_from_its_arrival(tmp_path):
    recs = run_personalization(_flip(tmp_path, eval=dict(every=1, max_new_tokens=8, reference="phase_start", personas=BOTH)), verbose=False)
    ref = {(r["step"], r["persona"]): r["reference_step"] for r in recs}
    assert ref == {(0, "concise_casual_beginner"): 0, (1, "concise_casual_beginner"): 0, (2, "concise_casual_beginner"): 0,
                   (1, "detailed_professional_expert"): 1, (2, "detailed_professional_expert"): 1}
    assert all(r["ties"] == 2 for r in recs if r["step"] == r["reference_step"])   # a model against its own answers


def test_an_accumulating_user_keeps_the_earlier_persona_and_each_is_judged_from_its_arrival(tmp_path):
    C, D = BOTH
    both = [{"persona": C, "steps": 1}, {"persona": [C, D], "steps": 1}]      # Fig. 6 as the recipe reads it
    recs = run_personalization(_flip(tmp_path, phases=both, eval=dict(every=1, max_new_tokens=8, reference="phase_start")), verbose=False)
    assert {(r["step"], r["persona"]): r["reference_step"] for r in recs} == {(0, C): 0, (1, C): 0, (2, C): 0, (1, D): 1, (2, D): 1}
    logged = [r for _, r in read_records(tmp_path / "train" / "interactions.jsonl")]
    assert all("too short" in r["o"] for r in logged if r["step"] == 2)     # the second user has both personas' rules
    assert not any("too short" in r["o"] for r in logged if r["step"] == 1)


def test_recipe_estimates_count_the_optimizer_they_set():
    "Each GPU recipe's memory estimate holds the state of the optimizer it configures, and fits one H200 with it."
    from hindsight_ref.protocols import optimizer_state_bytes
    for p in RECIPES:
        spec = Protocol.from_yaml(p)
        if not spec.estimate: continue
        assert spec.estimate["optimizer_gb"] == pytest.approx(optimizer_state_bytes(spec.train) * spec.estimate["params_b"], abs=0.05), p.name
        assert spec.estimate["total_gb"] < H200["memory_gb"], p.name
        header = p.read_text().split("\nprotocol:")[0]
        assert f"{spec.estimate['total_gb']:.0f} GB peak" in header, p.name      # the header states the same figure


def test_offline_protocol_and_sft_baseline(tmp_path):
    base = dict(protocol="offline", train=dict(model="tiny", lr=1e-3, schedule="constant", warmup_ratio=0.0, batch_size=2, grad_accum=1,
                                               max_steps=1),
                data=dict(source="fixtures", eval_size=2), eval=dict(every=1, checks=["kl_to_base", "perplexity"]))
    rep = run_protocol(Protocol(**base, output_dir=str(tmp_path / "h")), verbose=False)
    rows = {r["name"]: r for r in rep["comparison"]}
    assert rows["kl_to_base"]["before"] == 0 and rows["kl_to_base"]["after"] > 0 and "hindsight_kl" in rows
    assert json.loads((tmp_path / "h" / "report.json").read_text())["steps"] == 1
    sft = run_protocol(Protocol(**{**base, "train": {**base["train"], "loss": "sft"}}, output_dir=str(tmp_path / "s")), verbose=False)
    assert sft["loss"] == "sft" and {r["name"] for r in sft["comparison"]} == set(rows)


def test_resource_estimate_terms():
    arch = dict(hidden=1024, layers=28, ffn=3072, vocab=151936, heads=16, kv_heads=8, head_dim=128, tied=True)
    assert n_params(arch) == pytest.approx(0.596e9, rel=0.01)
    e = estimate_resources(arch, 4, 1000, 500, 1000)
    assert e["weights_gb"] == pytest.approx(4 * n_params(arch) / 1e9) and e["optimizer_gb"] == pytest.approx(e["weights_gb"] / 2)
    assert estimate_resources(arch, 8, 1000, 500, 1000)["activations_gb"] > e["activations_gb"]
    assert estimate_resources(arch, 4, 1000, 500, 2000)["hours"] == pytest.approx(2 * e["hours"])


# ---- every recipe, end to end, at toy size -------------------------------------------------------------
ARCH_OF = {"Qwen/Qwen3-0.6B": "qwen3-0.6b", "Qwen/Qwen3-1.7B": "qwen3-1.7b", "Qwen/Qwen3-4B": "qwen3-4b", "Qwen/Qwen3-8B": "qwen3-8b",
           "HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m"}
RECIPES = sorted(p for p in recipes_dir().glob("*.yaml") if p.read_text().lstrip("# \n").find("arch:") >= 0
                 and p.name.startswith(("offline_", "personalize_")))


@pytest.fixture(scope="module")
def toy_models():
    "arch -> (model, tokenizer): a random model of the architecture at toy size, with its real tokenizer."
    from hindsight_ref.models import random_model
    return {a: random_model(a, toy=True) for a in set(ARCH_OF.values())}


def shrink(spec: Protocol) -> Protocol:
    "The recipe's code path at toy size, as `hindsight-ref protocol NAME --smoke` runs it (`cli.smoke_protocol`)."
    from hindsight_ref.cli import smoke_protocol
    return smoke_protocol(spec)


def test_there_is_a_recipe_per_model_and_protocol():
    names = {p.stem for p in RECIPES}
    for a in ("qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "smollm2-135m"):
        assert f"offline_{a}" in names and f"personalize_{a}" in names
    assert {"offline_sft_qwen3-4b", "personalize_flip_qwen3-4b", "personalize_accumulate_qwen3-8b"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_end_to_end_at_toy_size(path, toy_models, tmp_path):
    spec = Protocol.from_yaml(path)
    assert spec.arch in toy_models and spec.train["model"] in ARCH_OF
    if spec.estimate: assert spec.estimate["total_gb"] < H200["memory_gb"], "the recipe's own estimate must fit one H200"
    loaded = []
    def load(name, **kw):
        loaded.append(name)
        m, t = toy_models[ARCH_OF[name]]
        return copy.deepcopy(m), t
    small = shrink(spec); small.output_dir = str(tmp_path)
    out = run_protocol(small, load=load, verbose=False)
    assert loaded[0] == spec.train["model"]
    if spec.protocol == "offline":
        assert [r["step"] for r in out["records"]][-1] == 1 and out["comparison"]
    else:
        assert max(r["step"] for r in out if r["step"] != "oracle") == small.total_steps
        if isinstance(spec.user, dict) and spec.user.get("backend") == "transformers": assert spec.user["model"] in loaded
