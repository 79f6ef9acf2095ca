"""hindsight_ref.hf: the library's step inside transformers' Trainer. Two processes (torchrun, gloo) take the step one
process takes over the same global batch; a run killed after a checkpoint and resumed by the Trainer ends where an
uninterrupted one does; every loss variant of the single-device step runs through the adapter unchanged; and the
library's sampled-token, full-vocabulary and top-k losses agree with TRL's self-distillation losses."""
import os, subprocess, sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "tests" / "hf_launch.py"
U = 2.0 ** -24           # float32 unit roundoff
EPS = 1e-8               # AdamW's epsilon
LR = 1e-3                # tests/hf_launch.py's learning rate


def launch(out, *args, procs=1, expect_rc=0):
    "Run tests/hf_launch.py as `procs` processes (torchrun --standalone for more than one); its result.pt."
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] if procs > 1
           else [sys.executable]) + [str(LAUNCH), str(out), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == expect_rc, r.stdout[-3000:] + r.stderr[-3000:]
    return torch.load(Path(out) / "result.pt") if expect_rc == 0 else None


def loss_tol(x):
    "A logged loss sums a few hundred token terms of order one; another summation order moves it by a few hundred roundings."
    return 256 * U * max(1.0, abs(x))


def adam_tol(grads, delta):
    "Per weight: AdamW moves w by about lr g / (|g| + eps); a gradient off by delta moves it by at most lr delta / (|g| + eps)."
    return {n: LR * torch.clamp(4 * delta / (g.abs() + EPS), max=2.0) for n, g in grads.items()}


def assert_weights_close(w, ref, tol):
    for n in ref:
        bound = tol[n] + 4 * U * ref[n].abs() if n in tol else 4 * U * ref[n].abs()
        bad = (w[n] - ref[n]).abs() > bound
        assert not bad.any(), f"{n}: {int(bad.sum())} weights differ beyond the float32 bound (max {(w[n] - ref[n]).abs().max():.2e})"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    "Two optimizer steps over a global batch of 8 on one process, a checkpoint after each step."
    return launch(tmp_path_factory.mktemp("one") / "run")


def test_two_processes_take_the_step_of_one(one_process, tmp_path):
    two = launch(tmp_path / "run", procs=2)
    one = one_process
    assert two["world"] == 2 and one["world"] == 1 and len(one["losses"]) == len(two["losses"]) == 2
    for a, b in zip(one["losses"], two["losses"]):
        assert abs(a - b) <= loss_tol(a), (one["losses"], two["losses"])
    g1, g2 = one["grads"][0], two["grads"][0]                    # step 1: both start from the same weights
    delta = 64 * U * max(g.abs().max().item() for g in g1.values())
    assert max(g.abs().max().item() for g in g1.values()) > 1e-3  # a real gradient, not zeros
    for n in g1: assert (g1[n] - g2[n]).abs().max() <= delta, n
    assert_weights_close(two["weights"][0], one["weights"][0], adam_tol(g1, delta))


def test_the_comparison_can_fail(one_process):
    "Weights moved by 4e-5, a twenty-fifth of one AdamW step, are outside the tolerance."
    g = one_process["grads"][0]
    delta = 64 * U * max(v.abs().max().item() for v in g.values())
    moved = {n: w + 4 * LR * 1e-2 for n, w in one_process["weights"][0].items()}
    with pytest.raises(AssertionError, match="differ beyond"):
        assert_weights_close(moved, one_process["weights"][0], adam_tol(g, delta))


def test_a_killed_run_resumes_from_the_trainers_checkpoint(one_process, tmp_path):
    out = tmp_path / "run"
    launch(out, "--die-after", "1", expect_rc=3)                 # exits hard right after checkpoint-1 is written
    assert (out / "checkpoint-1" / "optimizer.pt").exists() and not (out / "checkpoint-2").exists()
    resumed = launch(out, "--resume", str(out / "checkpoint-1"))
    assert len(resumed["grads"]) == 1                            # it took only the missing step
    assert abs(resumed["losses"][-1] - one_process["losses"][-1]) <= loss_tol(one_process["losses"][-1])
    g = one_process["grads"][1]
    delta = 64 * U * max(v.abs().max().item() for v in g.values())
    assert_weights_close(resumed["final"], one_process["final"], adam_tol(g, delta))
