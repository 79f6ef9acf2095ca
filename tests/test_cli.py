"Tests for hindsight_ref.cli: every kind of bad input gives one line that names the problem and the fix, a non-zero exit."
import os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest

import yaml

from hindsight_ref import cli, demo
from hindsight_ref.trainers import recipes_dir

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_many(*commands, timeout=600, script=False):
    "Run each command line in a fresh process, as a user would, all at once; returns [(exit status, stdout, stderr)]."
    exe = [str(Path(sys.executable).parent / "hindsight-ref")] if script else [sys.executable, "-m", "hindsight_ref.cli"]
    ps = [subprocess.Popen(exe + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
          for args in commands]
    outs = [p.communicate(timeout=timeout) for p in ps]
    return [(p.returncode, out, err) for p, (out, err) in zip(ps, outs)]


def run(*args, **kw):
    "Run one command line in a fresh process; returns (exit status, stdout, stderr)."
    return run_many(args, **kw)[0]


def one_line_error(rc, err, *needles, code=None):
    "The failure contract: non-zero exit (or exactly `code`), one line on stderr, `hindsight-ref...: error:`, naming `needles`."
    lines = err.strip().splitlines()
    assert rc != 0 and (code is None or rc == code), (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("hindsight-ref") and ": error: " in lines[0], lines[0]
    for n in needles: assert n in lines[0], (n, lines[0])
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_text(f"model: tiny\nmax_steps: 1\nprogress: false\noutput_dir: {tmp_path / 'run'}\n")
    return p


# ---- demo: arguments are checked before anything is loaded ---------------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["demo", "--n", "0"], ["--n", ">= 1", "got 0"]),
    (["demo", "--n", "-2"], ["--n", ">= 1", "got -2"]),
    (["demo", "--n", "two"], ["--n", "whole number", "'two'"]),
    (["demo", "--n", "2.5"], ["--n", "whole number", "'2.5'"]),
    (["demo", "--max-rows", "-1"], ["--max-rows", ">= 0"]),
    (["demo", "--dtype", "fp32"], ["--dtype", "float32", "bfloat16"]),
    (["demo", "--nn", "3"], ["unrecognized arguments: --nn"]),
    (["dmeo"], ["invalid choice: 'dmeo'", "{demo,recipes,train,protocol,probe}"]),
    (["train"], ["required", "config"]),
    (["protocol"], ["required", "config"]),
    (["train", "smoke_tiny", "--smoek"], ["unrecognized arguments: --smoek"]),
])
def test_malformed_command_lines_exit_2_with_one_line(args, needles):
    rc, out, err = run(*args)
    one_line_error(rc, err, *needles, "--help", code=2)


def test_demo_values_outside_what_exists(tmp_path):
    pool = len(demo.demo_pool())
    a_file = tmp_path / "a_file"; a_file.write_text("x")
    cases = [(["--n", pool + 1], [f"from 1 to {pool}", f"got {pool + 1}"]),
             (["--template", "papr"], ["'papr'", "offline_code", "paper"]),
             (["--device", "gpu"], ["'gpu'", "Fix: use one of cpu"]),
             (["--out", a_file], ["is a file", "--out"]),
             (["--out", a_file / "sub"], ["Cannot create the output folder", "--out"])]
    for (args, needles), (rc, out, err) in zip(cases, run_many(*[["demo", *args] for args, _ in cases])):
        one_line_error(rc, err, *needles, code=1)
        assert "model" not in out          # nothing was loaded


def test_demo_device_without_cuda():
    import torch
    if torch.cuda.is_available(): pytest.skip("this machine has a CUDA device")
    one_line_error(*run("demo", "--device", "cuda")[::2], "no CUDA device", "Fix: use one of cpu", code=1)


def test_demo_unknown_model_is_one_line(tmp_path):
    rc, out, err = run("demo", "--model", "no-such-org/no-such-model", "--out", tmp_path)
    one_line_error(rc, err, "no-such-org/no-such-model", "Fix:", code=1)


def test_library_callers_get_the_same_checks(tmp_path):
    for kw, msg in (({"n": 0}, "from 1 to"), ({"n": -2}, "from 1 to"), ({"n": 2.5}, "whole number"), ({"max_rows": -1}, "max_rows"),
                    ({"dtype": "fp16"}, "Unknown dtype"), ({"template": "nope"}, "Unknown template")):
        with pytest.raises(ValueError, match=msg): cli.run_demo(out=tmp_path, **kw)
    with pytest.raises(ValueError, match="from 1 to"): demo.demo_interactions(0)


# ---- train: the config is read and checked before a model is loaded ------------------------------------------------

def test_train_config_problems(tmp_path, cfg):
    bad_yaml = tmp_path / "bad.yaml"; bad_yaml.write_text("model: tiny\nlr: [1e-5\nepochs: 1\n")
    a_list = tmp_path / "list.yaml"; a_list.write_text("- model: tiny\n")
    cases = [([tmp_path / "missing.yaml"], ["missing.yaml", "recipes"]),
             ([bad_yaml], [f"{bad_yaml}:", "not valid YAML", "line 2", "Fix:"]),
             ([a_list], ["list.yaml", "mapping"]),
             ([cfg, "epochs"], ["'epochs'", "key=value"]),
             ([cfg, "lr=1", "lr=2"], ["lr is given twice"]),
             ([cfg, "learning_rate=1e-5"], ["learning_rate", "lr"])]
    for (args, needles), (rc, out, err) in zip(cases, run_many(*[["train", *args] for args, _ in cases])):
        one_line_error(rc, err, *needles, code=1)
    assert not (tmp_path / "run").exists()          # stopped before the trainer made its output folder


def test_train_wrong_types_fail_before_the_model_loads(cfg):
    cases = [("lr=fast", "float"), ("batch_size=2.5", "int"), ("epochs=two", "int")]
    for (override, expect), (rc, out, err) in zip(cases, run_many(*[["train", cfg, o] for o, _ in cases])):
        key, value = override.split("=")
        one_line_error(rc, err, key, value, expect, code=1)
        assert "training of" not in out              # main_train prints that after building the trainer


def test_train_bad_data_line_names_file_and_line(tmp_path, cfg):
    data = tmp_path / "data.jsonl"
    data.write_text('{"x": [{"role": "user", "content": "hi"}], "y": "hello", "o": "thanks"}\n{"x": [}\n')
    rc, out, err = run("train", cfg, f"data={data}")
    one_line_error(rc, err, f"{data}:2", "not valid JSON", "on_bad_record='skip'", code=1)


# ---- --debug, Ctrl-C ------------------------------------------------------------------------------------------------

def test_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "missing.yaml"
    for rc, out, err in run_many(["--debug", "train", missing], ["train", missing, "--debug"]):   # before or after the command
        assert rc == 1 and "Traceback (most recent call last)" in err and "FileNotFoundError" in err
        assert err.strip().splitlines()[-1].startswith("hindsight-ref: error: No config file")


def test_interrupt_exits_130_with_how_to_resume(monkeypatch, capsys, cfg, tmp_path):
    def interrupted(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(cli, "run_demo", interrupted)
    assert cli.main(["demo"]) == 130
    assert "interrupted. Nothing to resume: run the same command again." in capsys.readouterr().err
    monkeypatch.setattr(cli, "main_train", interrupted)
    assert cli.main(["train", str(cfg), "lr=1e-5"]) == 130
    err = capsys.readouterr().err
    assert "No checkpoint was saved" in err and f"hindsight-ref train {cfg} lr=1e-5 resume_from=latest" in err
    (tmp_path / "run" / "checkpoints" / "step-000003").mkdir(parents=True)
    assert cli.main(["train", str(cfg), "resume_from=latest"]) == 130
    err = capsys.readouterr().err
    assert "step-000003" in err and err.count("resume_from=latest") == 1


def test_ctrl_c_on_a_real_run(tmp_path):
    "A real training run, interrupted with SIGINT once it has saved a checkpoint: exit 130 and the resume command."
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: tiny\nmax_steps: 10000\nsave_every: 1\nbatch_size: 2\ngrad_accum: 1\nprogress: false\n"
                   f"output_dir: {tmp_path / 'run'}\n")
    # A job started in the background (`cmd &`, as some CI runners do) inherits SIGINT *ignored*, and Python then installs
    # no KeyboardInterrupt handler: give the child the default disposition, as a terminal's Ctrl-C would find it.
    p = subprocess.Popen([sys.executable, "-m", "hindsight_ref.cli", "train", str(cfg)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=ENV,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while not list((tmp_path / "run" / "checkpoints").glob("step-*[0-9]")):
        assert p.poll() is None, p.communicate()
        assert time.time() - t0 < 500, "no checkpoint appeared"
        time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (p.returncode, err)
    assert "interrupted" in err and "resume_from=latest" in err and "step-" in err and "Traceback" not in err


def test_console_script_behaves_the_same():
    if shutil.which("hindsight-ref", path=str(Path(sys.executable).parent)) is None: pytest.skip("package not installed as a script")
    rc, out, err = run("demo", "--n", "0", script=True)
    one_line_error(rc, err, "--n", code=2)


# ---- helpers --------------------------------------------------------------------------------------------------------

def test_parse_overrides_and_error_line():
    assert cli.parse_overrides(["lr=1e-5", "max_steps=10", "lora={r: 8}", "model=Qwen/Qwen3-1.7B", "eval_every=null"]) == \
        {"lr": "1e-5", "max_steps": 10, "lora": {"r": 8}, "model": "Qwen/Qwen3-1.7B", "eval_every": None}   # the config types 1e-5
    for bad, msg in ((["=3"], "key=value"), (["a b=3"], "key=value"), (["x=[1"], "not a YAML scalar"), (["a=1", "a=2"], "twice")):
        with pytest.raises(ValueError, match=msg): cli.parse_overrides(bad)
    assert cli.error_line(ValueError("two\nlines  here")) == "two lines here"
    assert cli.error_line(KeyError("no quotes")) == "no quotes"
    assert cli.error_line(TypeError("x")) == "TypeError: x" and cli.error_line(AssertionError()) == "AssertionError"


# ---- the command as people know them: --version, python -m, help, recipes by name --------------------------------------

def test_version_help_and_python_m():
    import hindsight_ref
    (rc_v, out_v, _), (rc_m, out_m, _), (rc_0, out_0, err_0) = run_many(["--version"], ["--version"], [])
    assert rc_v == 0 and out_v.strip() == f"hindsight-ref {hindsight_ref.__version__}"
    r = subprocess.run([sys.executable, "-m", "hindsight_ref", "--version"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0 and r.stdout == out_v
    assert rc_0 == 0 and out_0.startswith("usage: hindsight-ref") and not err_0          # no arguments: the help, exit 0
    for cmd in ("demo", "recipes", "train", "protocol"): assert cmd in out_0


def kind_of(path) -> str:
    "The kind of a recipe, by brute force: a protocol file is one that `Protocol.from_yaml` reads, a training one `TrainConfig`."
    from hindsight_ref.protocols import Protocol
    from hindsight_ref.train import TrainConfig
    try: Protocol.from_yaml(path); return "protocol"
    except ValueError:
        TrainConfig.from_yaml(path); return "train"


def test_recipes_lists_every_shipped_recipe_with_its_kind():
    rc, out, err = run("recipes")
    assert rc == 0, err
    rows = {l.split()[0]: l.split()[1] for l in out.splitlines()[3:] if l.strip()}
    files = sorted(recipes_dir().glob("*.yaml"))
    assert len(files) == 21 and sorted(rows) == [p.stem for p in files]
    assert rows == {p.stem: kind_of(p) for p in files}
    assert all(len(l.split(None, 2)) == 3 for l in out.splitlines()[3:])              # name, kind, one line each


def test_a_recipe_of_the_wrong_kind_names_the_right_command(tmp_path):
    mine = tmp_path / "mine.yaml"; mine.write_text("model: tiny\nmax_steps: 1\n")
    cases = [(["train", "personalize_qwen3-4b"], ["protocol recipe", "`hindsight-ref protocol personalize_qwen3-4b`"]),
             (["train", recipes_dir() / "offline_sft_qwen3-4b.yaml"], ["protocol recipe", "`hindsight-ref protocol "]),
             (["protocol", "smoke_tiny.yaml"], ["training recipe", "`hindsight-ref train smoke_tiny.yaml`"]),
             (["protocol", mine], ["training recipe", f"`hindsight-ref train {mine}`"]),
             (["train", "smoke_tiy"], ["no shipped recipe", "did you mean smoke_tiny", "hindsight-ref recipes"]),
             (["protocol", "personalise_qwen3-4b"], ["did you mean personalize_qwen3-4b"])]
    for (args, needles), (rc, out, err) in zip(cases, run_many(*[a for a, _ in cases])):
        one_line_error(rc, err, *needles, code=1)


def test_train_help_lists_every_config_field_with_its_default():
    import dataclasses
    from hindsight_ref.train import TrainConfig
    rc, out, err = run("train", "--help")
    assert rc == 0 and "--smoke" in out
    lines = {l.split()[0]: l for l in out.split("config fields", 1)[1].splitlines() if l.startswith("  ")}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in lines, f"train --help does not list {f.name}"
        default = lines[f.name].split()[1]
        assert yaml.safe_load(default) == f.default, (f.name, default, f.default)
        assert len(lines[f.name].split()) > 2, f"{f.name} has no one-line help in TrainConfig"


# ---- every shipped recipe runs from the command line at toy size -------------------------------------------------------

@pytest.fixture(scope="module")
def shared_loader():
    return cli.smoke_loader()        # one toy model per architecture for the whole module (each run gets a copy)


@pytest.mark.parametrize("path", sorted(recipes_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_runs_by_name_at_toy_size(path, tmp_path, shared_loader, monkeypatch, capsys):
    monkeypatch.setattr(cli, "smoke_loader", lambda: shared_loader)
    kind = kind_of(path)
    assert cli.main([kind, path.stem, "--smoke", f"output_dir={tmp_path / 'run'}"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "(toy size)" in out
    final = tmp_path / "run" / "final"
    if kind == "train": assert "saved to" in out and ((final / "config.json").exists() or (final / "adapter_config.json").exists())
    else: assert (tmp_path / "run" / ("curves.jsonl" if "personalization" in out else "report.json")).exists()


def test_smoke_keeps_what_the_command_line_says(tmp_path):
    cfg, ov = cli.load_train_config("smoke_tiny", [f"output_dir={tmp_path}", "max_steps=2", "device=cpu"], smoke=True)
    assert (cfg.max_steps, cfg.batch_size, cfg.optimizer, cfg.output_dir) == (2, 1, "adamw", str(tmp_path))


def test_probe_command_on_the_toy_world_reads_hindsight(tmp_path, capsys):
    "`hindsight-ref probe toyworld`: the verdict line, probe.json and probe.html; the real/unrelated interval lies above 1."
    import json
    out = tmp_path / "probe"
    assert cli.main(["probe", "toyworld", "--n", "16", "--templates", "paper", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rep = json.loads((out / "probe.json").read_text())
    assert (out / "probe.html").exists() and rep["templates"] == ["paper"] and rep["n"] == 16
    ratio = rep["stats"]["paper"]["unrelated"]["token"]["ratio"]
    assert ratio["low"] > 1 and rep["verdict"].startswith("reads hindsight") and f"verdict: {rep['verdict']}" in printed


@pytest.mark.parametrize("args, needles", [(["probe", "toyworld", "--n", "1"], ["--n", ">= 2"]),
                                           (["probe", "toyworld", "--templates", "nope"], ["nope"])])
def test_probe_command_bad_input_is_one_line(args, needles, tmp_path):
    rc, out, err = run(*args, "--out", tmp_path / "p")
    one_line_error(rc, err, *needles)
