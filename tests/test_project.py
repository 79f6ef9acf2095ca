"The project's own promises: two-command README, CI calls the test command, conda env matches pip, notebooks well-formed."
import configparser, json, re
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
