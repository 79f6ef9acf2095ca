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
    for m in pkgutil.walk_packages(hindsight_ref.__path__, "hindsight_ref."):
        if m.name.rsplit(".", 1)[-1].startswith("_") or m.ispkg: continue
        mod = importlib.import_module(m.name)
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


@pytest.mark.parametrize("path", NOTEBOOKS + sorted((ROOT / "hindsight_ref").rglob("*.py")), ids=lambda p: p.name)
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


# ---- one stack: one home per idea ------------------------------------------------------------------------------------

import ast, collections

MODULES = [p for p in sorted((ROOT / "hindsight_ref").rglob("*.py")) if p.name not in ("_modidx.py", "__init__.py")]
MODULE_NAMES = {p: "hindsight_ref." + ".".join(p.relative_to(ROOT / "hindsight_ref").with_suffix("").parts) for p in MODULES}


def _signature_lines(text):
    "Line numbers of the parameter lines of multi-line signatures (one documented parameter a line, nbdev's docments)."
    out = set()
    for n in ast.walk(ast.parse(text)):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)): out.update(range(n.lineno + 1, n.body[0].lineno))
    return out


def test_no_module_is_over_450_lines():
    "Lines of code and prose; the parameter lines of signatures are documentation, one per parameter, and not counted."
    size = lambda p: len(p.read_text().splitlines()) - len(_signature_lines(p.read_text()))
    long = {MODULE_NAMES[p]: n for p in MODULES if (n := size(p)) > 450}
    assert not long, f"modules over 450 lines (split the notebook's idea, or move a piece to its home): {long}"


def test_no_module_imports_another_modules_private_names():
    found = []
    for p in MODULES:
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("hindsight_ref")):
                found += [f"{MODULE_NAMES[p]} imports {n.module}.{a.name}" for a in n.names if a.name.startswith("_")]
    assert not found, "make these public (and document them) or move them to the module that uses them:\n" + "\n".join(found)


def test_no_two_modules_export_the_same_name():
    owners = collections.defaultdict(list)
    for p in MODULES:
        for name in getattr(importlib.import_module(MODULE_NAMES[p]), "__all__", []): owners[name].append(MODULE_NAMES[p])
    shared = {k: v for k, v in owners.items() if len(v) > 1}
    assert not shared, f"public names defined in more than one module (one home per idea): {shared}"


def _code_lines(p):
    """(line number, stripped line) of the statements of a module: no blank lines, comments, imports, one-line docstrings
    or parameter lines of multi-line signatures (two functions may well share parameters and their descriptions)."""
    sig = _signature_lines(p.read_text())
    for i, l in enumerate(p.read_text().splitlines(), 1):
        s = l.strip()
        if not s or s.startswith(("#", "import ", "from ")) or (s[0] in "\"'" and s[-1] == s[0] and len(s) > 2) or i in sig:
            continue
        yield i, s


def test_no_block_of_four_lines_repeats_in_the_package():
    seen = collections.defaultdict(list)
    for p in MODULES:
        lines = list(_code_lines(p))
        for k in range(len(lines) - 3):
            seen[tuple(s for _, s in lines[k:k + 4])].append(f"{MODULE_NAMES[p]}:{lines[k][0]}")
    repeated = {" | ".join(b): w for b, w in seen.items() if len(w) > 1}
    assert not repeated, "blocks of 4+ statements that appear twice (make one piece of code serve both):\n" + \
        "\n".join(f"{w}: {b}" for b, w in repeated.items())


def test_the_one_stack_checks_can_fail(tmp_path):
    a = tmp_path / "a.py"; a.write_text("from hindsight_ref.signal import _lm_head\nx = 1\ny = 2\nz = 3\nw = 4\n")
    assert [s for _, s in _code_lines(a)] == ["x = 1", "y = 2", "z = 3", "w = 4"]
    b = tmp_path / "b.py"; b.write_text('def f(\n    a,  # the a\n    b=2,  # the b\n) -> int:\n    "Doc."\n    return a\n')
    assert _signature_lines(b.read_text()) == {2, 3, 4} and [s for _, s in _code_lines(b)] == ["def f(", "return a"]
    node = next(n for n in ast.walk(ast.parse(a.read_text())) if isinstance(n, ast.ImportFrom))
    assert node.module == "hindsight_ref.signal" and node.names[0].name.startswith("_")
