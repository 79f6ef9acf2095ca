"The project's own promises: two-command README, CI calls the test command, conda env matches pip, notebooks well-formed."
import configparser, json, re
import pytest
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _names(reqs):
    return {re.split(r"[<>=!\s\[@]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in reqs if r.strip()}


def settings():
    cfg = configparser.ConfigParser(delimiters=["="]); cfg.read(ROOT / "settings.ini")
    return cfg["DEFAULT"]


def test_readme_quick_start_is_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S).group(1)
    cmds = [l.split("#")[0].strip() for l in block.splitlines() if l.split("#")[0].strip()]
    assert cmds == ["make demo", "make test"], cmds
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    mk = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", mk, re.M) and re.search(r"^test:", mk, re.M)


def test_runtime_does_not_depend_on_dev_tools():
    runtime = _names(settings()["requirements"].split())
    assert not runtime & {"nbdev", "jupyter", "pytest", "execnb", "fastcore", "hypothesis"}, runtime
    assert {"torch", "transformers", "datasets", "einops", "matplotlib"} <= runtime
    # the exported library never imports nbdev or pytest
    for f in (ROOT / "hindsight_ref").glob("*.py"):
        if f.name == "_modidx.py": continue
        src = f.read_text()
        assert not re.search(r"^\s*(import|from)\s+(nbdev|pytest|fastcore\.test)\b", src, re.M), f.name


def test_conda_environment_matches_pip_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = _names(conda) | _names(pip)
    have |= {"torch"} if "pytorch" in have else set()
    want = _names(settings()["requirements"].split()) | _names(settings()["dev_requirements"].split())
    assert want <= have, f"environment.yml lacks {sorted(want - have)}"


def test_torch_is_pinned_in_the_environment_script():
    # an unpinned torch can pull a multi-GB CUDA build
    assert re.search(r'torch==\$\{TORCH_VERSION:-2\.\d+\.\d+\}', (ROOT / "tools" / "env.sh").read_text())


def test_every_notebook_has_a_title_and_colab_install_cell():
    for nb_path in sorted((ROOT / "nbs").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text())
        md = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
        assert "".join(md[0]["source"]).startswith("# "), f"{nb_path.name}: first markdown cell must be '# Title'"
        if nb_path.stem == "index": continue
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert "google.colab" in "".join(code[0]["source"]), f"{nb_path.name}: first code cell must install in Colab"
        assert "colab-badge" in "".join("".join(c["source"]) for c in md[:2]), f"{nb_path.name}: no Colab badge"


def test_committed_notebooks_stay_small():
    for nb_path in (ROOT / "nbs").glob("*.ipynb"):
        assert nb_path.stat().st_size < 3_000_000, f"{nb_path.name} is over 3 MB: trim its outputs"


# ---- notebooks speak to their reader --------------------------------------------------------------------------------

import importlib, inspect, io, pkgutil, tokenize
import nbformat

NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))
OFFLINE_VARS = r"(HF_HUB_OFFLINE|HF_DATASETS_OFFLINE|TRANSFORMERS_OFFLINE)"
# what a reader of the published notebooks does not have, and what to write instead
NOT_FOR_READERS = {
    r"\bdigests?\b": "cite the paper itself (section, equation, figure, table)",
    r"§": "write 'Section N' (of the paper) instead of a section sign",
    r"\bthe issue\b": "say what the problem is; the reader has no issue to look at",
    r"environment\.md": "say what the environment provides, in the notebook",
    r"peers-and-style": "name the project you compare with",
    r"\bthis machine\b": "say which machine (the reader's, a CPU, a GPU)",
    r"\bthe shelf\b": "cite a public source",
}


def _read(nb_path):
    return nbformat.read(str(nb_path), as_version=4)


def _comments_and_strings(src: str) -> list[str]:
    "The comments and string literals of a code cell (IPython magics and shell lines left out)."
    code = "\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in src.splitlines())
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return [l.split("#", 1)[1] for l in code.splitlines() if "#" in l]
    keep = {tokenize.COMMENT, tokenize.STRING} | ({tokenize.FSTRING_MIDDLE} if hasattr(tokenize, "FSTRING_MIDDLE") else set())
    return [t.string for t in toks if t.type in keep and not t.string.startswith("#|")]


def reader_texts(path):
    "(where, text) for every piece of text a reader sees: markdown cells, code comments and strings (or the whole README)."
    if path.suffix == ".md": yield path.name, path.read_text(); return
    for i, c in enumerate(_read(path).cells):
        if c.cell_type == "markdown": yield f"{path.name} cell {i} (markdown)", c.source
        elif c.cell_type == "code":
            for t in _comments_and_strings(c.source): yield f"{path.name} cell {i} (code)", t


@pytest.mark.parametrize("path", NOTEBOOKS + [ROOT / "README.md"], ids=lambda p: p.name)
def test_reader_text_cites_only_what_a_reader_has(path):
    found = []
    for where, text in reader_texts(path):
        for pat, fix in NOT_FOR_READERS.items():
            for m in re.finditer(pat, text, re.I):
                ctx = " ".join(text[max(0, m.start() - 40):m.end() + 40].split())
                found.append(f"{where}: {m.group(0)!r} in '...{ctx}...' -> {fix}")
    assert not found, f"{len(found)} references a reader cannot follow:\n" + "\n".join(found)


def _plot_helpers() -> set:
    "Public functions of the package that draw: those with an `ax` argument."
    import hindsight_ref
    names = set()
    for m in pkgutil.iter_modules(hindsight_ref.__path__):
        if m.name.startswith("_"): continue
        mod = importlib.import_module(f"hindsight_ref.{m.name}")
        for name, f in inspect.getmembers(mod, inspect.isfunction):
            if f.__module__ == mod.__name__ and not name.startswith("_") and "ax" in inspect.signature(f).parameters: names.add(name)
    return names


DRAWS = r"\bplt\.(subplots|subplot|figure|plot|imshow|bar|barh|hist|scatter|matshow|show)\(|\.(plot|imshow|savefig|bar|barh|hist|scatter|matshow|pcolormesh)\("
NOT_COMMITTED = re.compile(r"(figure|image|plot)s?\b[^\n]*\bnot committed", re.I)


def _flags(src: str) -> set:
    return {f.strip() for l in src.splitlines() if l.startswith("#|") for f in re.split(r"[\s,]+", l[2:]) if f.strip()}


@pytest.mark.parametrize("p", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_cell_has_its_image_committed(p):
    helpers = re.compile(r"\b(" + "|".join(sorted(_plot_helpers())) + r")\(")
    missing = []
    cells = _read(p).cells
    for i, c in enumerate(cells):
        if c.cell_type != "code": continue
        src, flags = c.source, _flags(c.source)
        if flags & {"export", "exporti", "hide"} or re.search(r"^#\|\s*(eval:\s*false|include:\s*false)", src, re.M): continue
        body = "\n".join(l for l in src.splitlines() if not l.lstrip().startswith("#"))
        if not (re.search(DRAWS, body) or helpers.search(body)): continue
        if any("image/png" in o.get("data", {}) for o in c.get("outputs", [])): continue
        before = cells[i - 1].source if i and cells[i - 1].cell_type == "markdown" else ""
        if flags & {"slow", "cuda"} and (NOT_COMMITTED.search(src) or NOT_COMMITTED.search(before)): continue
        missing.append(f"{p.name} cell {i}: {src.strip().splitlines()[-1][:90]!r}")
    assert not missing, ("cells that draw a figure but have no image/png output committed (run the notebook and commit it "
                         "with outputs; a slow/cuda cell that cannot be run must say 'figure not committed' and why):\n"
                         + "\n".join(missing))


@pytest.mark.parametrize("path", NOTEBOOKS + sorted((ROOT / "hindsight_ref").glob("*.py")), ids=lambda p: p.name)
def test_nothing_forces_offline_mode(path):
    force = [re.compile(rf"setdefault\(\s*[\"']{OFFLINE_VARS}[\"']"),
             re.compile(rf"environ\[\s*[\"']{OFFLINE_VARS}[\"']\s*\]\s*=(?!=)"),
             re.compile(rf"environ\.update\([^)]*{OFFLINE_VARS}"), re.compile(rf"putenv\(\s*[\"']{OFFLINE_VARS}")]
    sources = ([(f"{path.name} cell {i}", c.source) for i, c in enumerate(_read(path).cells) if c.cell_type == "code"]
               if path.suffix == ".ipynb" else [(f"hindsight_ref/{path.name}", path.read_text())])
    found = [f"{where}: {m.group(0)}" for where, src in sources for rx in force for m in rx.finditer(src)]
    assert not found, ("notebooks and the library must respect the environment (a Colab reader has the hub; the test "
                       "command sets offline mode itself). Remove:\n" + "\n".join(found))


def test_readme_shows_no_code_before_the_quick_start():
    head = (ROOT / "README.md").read_text().split("## Quick start")[0]
    assert "```python" not in head, "the landing page's figure cell must carry `#| echo: false`"


def test_the_checks_above_can_fail():
    "Each check finds what it looks for in a notebook made to have it."
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("As the digest says (§3), see the issue."),
        nbformat.v4.new_code_cell('import os\nos.environ.setdefault("HF_HUB_OFFLINE", "1")  # on this machine'),
        nbformat.v4.new_code_cell("fig, ax = plt.subplots()\nax.plot([1, 2])")])
    texts = [c.source for c in nb.cells if c.cell_type == "markdown"] + _comments_and_strings(nb.cells[1].source)
    hits = {pat for pat in NOT_FOR_READERS for t in texts if re.search(pat, t, re.I)}
    assert hits == {r"\bdigests?\b", "§", r"\bthe issue\b", r"\bthis machine\b"}
    assert re.search(rf"setdefault\(\s*[\"']{OFFLINE_VARS}[\"']", nb.cells[1].source)
    assert re.search(DRAWS, nb.cells[2].source) and not nb.cells[2].outputs
    assert _flags("#| slow\n#| export\nx = 1") == {"slow", "export"}
    assert "control_panel" in _plot_helpers() or _plot_helpers()
