"""The shape of the package, measured: one training step calls few library functions in few files (a `sys.setprofile`
tracer), the imports keep the intended layering (parsed from the source), the toy world's pure-Python part loads no torch,
and the online step never re-encodes the completion it sampled."""
import ast, copy, json, os, subprocess, sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "hindsight_ref"

# The intended order, lowest first: a module may import only modules before it.
ORDER = ["data", "models", "viz", "contexts", "signal", "losses", "estimators", "sampling", "fused", "backends", "simulators",
         "train", "evaluation", "trainers", "hf", "protocols", "toyworld.world", "toyworld.model", "toyworld.experiments", "toyworld.stability", "probe",
         "demo", "cli", "__main__"]
STEP_BUDGET = dict(functions=20, files=5)          # one offline optimizer step, JSONL record already encoded


# ---- (a) what one step calls ------------------------------------------------------------------------------------------------
def trace(fn) -> list[tuple[str, str]]:
    "The distinct library functions (file, qualified name) that `fn()` calls, in first-call order (no lambdas, comprehensions)."
    seen = {}
    def profile(frame, event, arg):
        if event != "call": return
        f, name = frame.f_code.co_filename, frame.f_code.co_qualname
        if f.startswith(str(PKG)) and not name.startswith("<") and ".<" not in name:
            seen.setdefault((os.path.relpath(f, PKG), name), None)
    sys.setprofile(profile)
    try: fn()
    finally: sys.setprofile(None)
    return list(seen)


def _report(what, calls):
    files = sorted({f for f, _ in calls})
    print(f"\n{what}: {len(calls)} distinct library functions in {len(files)} files ({', '.join(files)})")
    for f, name in calls: print(f"  {f}:{name}")
    return files


def test_one_offline_step_stays_on_one_screen(tmp_path, tok, capsys):
    from hindsight_ref.data import fixture_interactions
    from hindsight_ref.models import tiny_model
    from hindsight_ref.train import TrainConfig
    from hindsight_ref.trainers import HindsightTrainer
    cfg = TrainConfig(model="tiny", batch_size=2, grad_accum=2, max_steps=2, progress=False, output_dir=str(tmp_path / "run"))
    tr = HindsightTrainer(cfg, *tiny_model(tokenizer=tok), interactions=fixture_interactions()[:8])
    calls = trace(tr.take_step)
    files = _report("offline step", calls)
    assert tr.step == 1
    assert len(calls) <= STEP_BUDGET["functions"] and len(files) <= STEP_BUDGET["files"], (len(calls), files)
    assert set(files) <= {"trainers.py", "train.py", "contexts.py", "signal.py", "losses.py"}


def test_one_online_step_is_measured_and_samples_through_sampling(tmp_path, tok):
    from hindsight_ref.data import fixture_interactions
    from hindsight_ref.models import tiny_model
    from hindsight_ref.simulators import RuleBasedSimulator
    from hindsight_ref.train import TrainConfig
    from hindsight_ref.trainers import OnlineTrainer
    cfg = TrainConfig(model="tiny", mode="online", batch_size=2, max_steps=2, max_new_tokens=8, progress=False,
                      output_dir=str(tmp_path / "run"))
    tr = OnlineTrainer(cfg, *tiny_model(tokenizer=tok), prompts=[it.x for it in fixture_interactions()[:4]],
                       simulator=RuleBasedSimulator(max_words=5))
    calls = trace(tr.take_step)
    files = _report("online step", calls)
    names = {n for _, n in calls}
    assert {"sample_interactions", "encode_sampled", "hindsight_loss", "train_step"} <= names
    assert "encode_interaction" not in names and "backends.py" not in files


# ---- (b) the import graph -----------------------------------------------------------------------------------------------------
def _module(p: Path) -> str:
    return ".".join(p.relative_to(PKG).with_suffix("").parts)


def imports() -> dict[str, set[str]]:
    "Each module's imports of other package modules, at any depth of its code (lazy imports inside functions too)."
    graph = {}
    for p in sorted(PKG.rglob("*.py")):
        if p.name in ("__init__.py", "_modidx.py"): continue
        me, out = _module(p), set()
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom):
                if n.level:                                    # relative: from .x import y / from ..x import y
                    base = me.split(".")[:len(me.split(".")) - n.level]
                    target = ".".join(base + ([n.module] if n.module else []))
                elif (n.module or "").startswith("hindsight_ref."): target = n.module.removeprefix("hindsight_ref.")
                else: continue
                out |= {f"{target}.{a.name}" if f"{target}.{a.name}" in ORDER else target for a in n.names}
            elif isinstance(n, ast.Import):
                out |= {a.name.removeprefix("hindsight_ref.") for a in n.names if a.name.startswith("hindsight_ref.")}
        graph[me] = {t for t in out if t and t != me}
    return graph


def cycles(graph) -> list[list[str]]:
    "Every cycle found by a depth-first search (each reported once, from where it was entered)."
    found, state = [], {}
    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open": found.append(path[path.index(t):] + [t])
            elif t not in state: visit(t, path + [t])
        state[m] = "done"
    for m in sorted(graph):
        if m not in state: visit(m, [m])
    return found


def test_the_import_graph_keeps_the_layering():
    graph = imports()
    print("\n" + "\n".join(f"{m:>22} -> {', '.join(sorted(ts))}" for m, ts in sorted(graph.items(), key=lambda kv: ORDER.index(kv[0])
                                                                                                 if kv[0] in ORDER else -1)))
    unknown = sorted(set(graph) - set(ORDER)) + sorted({t for ts in graph.values() for t in ts} - set(ORDER))
    assert not unknown, f"modules missing from ORDER (say where they stand): {unknown}"
    assert not cycles(graph), cycles(graph)
    up = [f"{m} -> {t}" for m, ts in graph.items() for t in ts if ORDER.index(t) >= ORDER.index(m)]
    assert not up, f"imports that run up (or sideways) the intended order: {up}"
    assert not graph["trainers"] & {"simulators", "backends"}, graph["trainers"]


def test_the_layering_checks_can_fail():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    graph = imports()
    assert "train" in graph["trainers"] and "contexts" in graph["signal"]   # the parser sees real edges


# ---- (c) the toy world's pure-Python part -----------------------------------------------------------------------------------
def test_the_toy_world_grammar_loads_no_torch():
    code = "import sys, hindsight_ref.toyworld.world; print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_package_itself_loads_no_torch():
    code = "import sys, hindsight_ref as hr; dir(hr); print('torch' in sys.modules, hr.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split()[0] == "False"


# ---- (d) the online step scores what it sampled, without re-encoding it -----------------------------------------------------
def test_the_online_step_never_re_encodes_the_sampled_completion(tmp_path, tok, monkeypatch):
    import hindsight_ref.contexts as contexts_mod
    from hindsight_ref.data import fixture_interactions
    from hindsight_ref.models import tiny_model
    from hindsight_ref.train import TrainConfig
    from hindsight_ref.trainers import OnlineTrainer
    def refuse(*a, **k): raise AssertionError("encode_interaction called in the online step")
    monkeypatch.setattr(contexts_mod, "encode_interaction", refuse)
    texts = []
    spy_tok = copy.deepcopy(tok)
    base = type(spy_tok)
    class Spy(base):                                       # every text the tokenizer encodes, by either door
        def __call__(self, text, *a, **k): texts.append(text); return base.__call__(self, text, *a, **k)
        def encode(self, text, *a, **k): texts.append(text); return base.encode(self, text, *a, **k)
    spy_tok.__class__ = Spy
    cfg = TrainConfig(model="tiny", mode="online", batch_size=3, max_steps=1, max_new_tokens=10, progress=False,
                      output_dir=str(tmp_path / "run"))
    tr = OnlineTrainer(cfg, *tiny_model(tokenizer=spy_tok), prompts=[it.x for it in fixture_interactions()[:3]],
                       simulator=lambda x, y: "Shorter, please.")
    texts.clear()
    tr.take_step()
    ys = [json.loads(l)["y"] for l in (tmp_path / "run" / "interactions.jsonl").read_text().splitlines()]
    ys = [y for y in ys if len(y) >= 12]                  # long enough not to occur in a rendered context by chance
    assert ys and texts, (ys, texts)                      # something was sampled, and the contexts were rendered
    assert not [y for y in ys for t in texts if isinstance(t, str) and y in t], "a sampled completion went through the tokenizer"
