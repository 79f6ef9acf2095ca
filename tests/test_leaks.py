"""Nothing a reader lacks: no machine paths, no development history, no stale notebook names, no busy-machine timing
prose, and a measured GPU rate used as an estimate says what it is. Scanned: every notebook (sources and outputs),
README.md, docs/*.md and the shipped recipes. Each rule is checked against a planted example it must catch and a near
miss it must let through (test_each_rule_catches_its_planted_example)."""
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "nbs").glob("*.ipynb"))
NOTEBOOK_NAMES = {p.stem for p in NOTEBOOKS}
# the names the notebooks had before they were numbered as a course; none may come back
OLD_NAMES = ["00_models", "01_interactions", "02_contexts", "03_signal", "04_viz", "05_losses", "05b_fused", "06_sampling",
             "07_train", "07a_train", "07b_trainers", "08_simulators", "08a_backends", "08b_simulators", "09_simulators",
             "09a_evaluation", "09b_protocols", "10a_world", "10b_world_model", "10c_toyworld", "11_fused", "11_demo",
             "12_backends", "12_cli"]

PATH = re.compile(r"(?<![\w.~$])(/tmp/|/work/|/home/|/Users/|/root/|/var/folders/|/private/var/|[A-Z]:\\Users\\)"
                  r"|(?<![\w/])tmp[a-z0-9_]{8}(?![\w])")
HISTORY = re.compile("|".join([
    r"\b(an? )?(earlier|previous|older|old|first) (version|revision|draft|edition) of (this|the) (notebook|page|project|library|code)",
    r"\bthis project (cannot|could not|can't) (reach|access|download)",
    r"\b(cannot|could not|can't) reach the hub\b",
    r"\b(offline|online) here\b",
    r"\bout of reach where\b",
    r"\bwhere (this notebook's|these|the) outputs were (made|produced|run)\b",
    r"\bof before\b",
    r"\b(keeps|kept) the old (forms?|names?|interface|API)\b",
    r"\bthe old (forms?|names?|interface|API) (still|are kept|is kept)\b",
    r"\b(in|from) (the|our) (build|sandbox|development) (environment|machine|container)\b",
    r"\bthe brief's\b",
    r"\bpeer projects\b",
]), re.I)
STALE = re.compile(r"(?<![\w/.-])(?:nbs/)?(\d{2}[a-z]?_[a-z][a-z0-9_]*)(?:\.ipynb)?(?![\w-])")
STALE_SHORT = re.compile(r"`(0\d[ab]|10[abc])`|\bnotebooks? (0\d[ab]|10[abc])\b")
BUSY = re.compile("|".join([
    r"\b(machine|host|box|computer|cores?|CPUs?|GPU) (was|were) (busy|loaded|shared|contended)\b",
    r"\bbusy (machine|host|box|computer|cores?|CPUs?|CPU cores?|GPUs?)\b",
    r"\b\d+ busy (CPU )?cores?\b",
    r"\b(another|other) (process|processes|jobs?) (on|sharing) (the|this|our) (second |other )?(core|machine|CPU|GPU)",
    r"\b(another|other) (process|processes|jobs?) (was|were) running\b",
    r"\bwall time can grow\b",
]), re.I)
GPU_RATE = re.compile(r"\b161(\.0)?\s?TFLOP|train_tflops\s*=\s*161")
GPU_RATE_SAYS = [re.compile(r"\bmeasured\b", re.I), re.compile(r"\b(H100|H200|A100|L4|T4)\b"), re.compile(r"\bestimat", re.I)]


def stale_names(text: str) -> list[str]:
    "Notebook names that no notebook in nbs/ carries (an old name, or one that never existed)."
    hits = [m.group(1) for m in STALE.finditer(text) if re.fullmatch(r"\d{2}[a-z]?_[a-z]+(_[a-z]+)*", m.group(1))
            and m.group(1) not in NOTEBOOK_NAMES]
    hits += [m.group(0) for m in STALE_SHORT.finditer(text)]
    hits += [n for n in OLD_NAMES if n not in NOTEBOOK_NAMES and re.search(rf"(?<![\w-]){n}(?![\w-])", text)]
    return sorted(set(hits))


def unnamed_gpu_rates(text: str) -> list[str]:
    "Each use of the measured 161 TFLOP/s whose sentence (300 characters around) does not say measured, on which card, as an estimate."
    out = []
    for m in GPU_RATE.finditer(text):
        around = text[max(0, m.start() - 300):m.end() + 300]
        if not all(rx.search(around) for rx in GPU_RATE_SAYS): out.append(m.group(0))
    return out


RULES = {
    "machine path (print a path relative to the working directory or the run folder)": lambda t: [m.group(0) for m in PATH.finditer(t)],
    "development history (say what is true now, for the reader)": lambda t: [m.group(0) for m in HISTORY.finditer(t)],
    "stale notebook name (use the file names in nbs/)": stale_names,
    "busy-machine timing prose (state the timing and the hardware, not the load)": lambda t: [m.group(0) for m in BUSY.finditer(t)],
    "a measured GPU rate used as an estimate must say it was measured, on which card, and that it is the estimate": unnamed_gpu_rates,
}


def _text(v) -> str:
    return "".join(v) if isinstance(v, list) else str(v)


def texts(path: Path):
    "(where, text) for everything a reader of `path` sees: for a notebook, each cell's source and each text output."
    if path.suffix != ".ipynb":
        yield path.relative_to(ROOT).as_posix(), path.read_text(); return
    for i, c in enumerate(json.loads(path.read_text())["cells"]):
        yield f"{path.name} cell {i} (source)", _text(c["source"])
        for o in c.get("outputs", []):
            if "text" in o: yield f"{path.name} cell {i} (output)", _text(o["text"])
            if "traceback" in o: yield f"{path.name} cell {i} (output)", "\n".join(o["traceback"])
            for mime, v in o.get("data", {}).items():
                if mime.startswith("text/") or mime.endswith("json"): yield f"{path.name} cell {i} (output {mime})", _text(v)


def findings(items) -> list[str]:
    out = []
    for where, text in items:
        for rule, find in RULES.items():
            for hit in find(text):
                i = text.find(hit)
                ctx = " ".join(text[max(0, i - 50):i + len(hit) + 50].split())
                out.append(f"{where}: {hit!r} in '...{ctx}...' -> {rule}")
    return out


FILES = NOTEBOOKS + [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "hindsight_ref" / "recipes").glob("*"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_leaks(path):
    found = findings(texts(path))
    assert not found, f"{len(found)} things a reader does not have:\n" + "\n".join(found)


PLANTED = {  # rule -> (text it must catch, near miss it must let through)
    "machine path": ("report: /tmp/tmpab12cd34/run/report.html", "report: runs/demo/report.html (15 s) in ~/.cache/hindsight_ref"),
    "machine path ": ("The checkpoint tmp6svisykg/b/state.pt is unreadable", "tempfile.mkdtemp() and tmp_path"),
    "development history": ("an earlier version of this notebook read 1.0 to 1.2", "a completion no longer than ignore_first_k"),
    "development history ": ("this project cannot reach the hub, so", "load_model respects the environment"),
    "development history  ": ("which respects the environment: offline here, the hub on Colab", "set HF_HUB_OFFLINE=1 to work offline"),
    "stale notebook name": ("(`09_simulators`: rule-based users)", "(`30_simulators`: rule-based users)"),
    "stale notebook name ": ("a `TrainConfig` (`07a_train`) and see `10c`", "step-000006 and 2026_12_06"),
    "busy-machine timing prose": ("the machine was busy, so the times are long", "a second thread waits when the other core is busy"),
    "busy-machine timing prose ": ("about 1 (2 busy cores)", "about 1 h on two CPU cores"),
    "a measured GPU rate": ("Time at 161 TFLOP/s.", "at 161 TFLOP/s, a step rate measured on one H200 and used as the estimate"),
}


@pytest.mark.parametrize("label", PLANTED)
def test_each_rule_catches_its_planted_example(label):
    bad, fine = PLANTED[label]
    rule = next(r for r in RULES if r.startswith(label.strip()))
    assert RULES[rule](bad), f"{rule!r} misses {bad!r}"
    assert not RULES[rule](fine), f"{rule!r} flags {fine!r}: {RULES[rule](fine)}"


def test_notebook_outputs_are_scanned(tmp_path):
    "A path planted in an output (not the source) of a notebook is found."
    nb = {"cells": [{"cell_type": "code", "source": ["print(out)"], "metadata": {}, "execution_count": 1,
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": ["saved to /tmp/tmpxl3ib5rk/run/final\n"]}]}]}
    (tmp_path / "probe.ipynb").write_text(json.dumps(nb))
    found = findings(texts(tmp_path / "probe.ipynb"))
    assert len(found) == 1 and "(output)" in found[0] and "machine path" in found[0]
