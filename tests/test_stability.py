"Tests of the stability measurements: ROUGE-L and self-ROUGE-L on hand strings, entropy of known distributions, the collapse rule on hand-built series with a known onset, the probe against the base, and a grid that resumes without rerunning a cached run."
import itertools, json, math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from hindsight_ref.toyworld import stability as s


def lcs_brute(a, b) -> int:
    "Longest common subsequence by trying every subsequence of the shorter one (reference for small inputs)."
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    def is_sub(sub, seq):
        it = iter(seq); return all(x in it for x in sub)
    return max((k for k in range(len(short), -1, -1) for sub in itertools.combinations(short, k) if is_sub(sub, long_)), default=0)


@given(a=st.lists(st.sampled_from("abc"), max_size=7), b=st.lists(st.sampled_from("abc"), max_size=7))
def test_lcs_matches_brute_force(a, b):
    assert s.lcs_length(a, b) == lcs_brute(a, b)


def test_rouge_l_on_hand_strings():
    # LCS of "the cat sat on the mat" / "the cat on a mat" is "the cat on mat" (4 words): F1 = 2 * 4 / (6 + 5)
    assert s.rouge_l("the cat sat on the mat", "the cat on a mat") == pytest.approx(8 / 11)
    assert s.rouge_l("a b c", "a b c") == 1.0 and s.rouge_l("a b c", "d e") == 0.0 and s.rouge_l("", "a") == 0.0
    assert s.rouge_l("a b c d", "d c b a") == pytest.approx(2 * 1 / 8)       # reversed: any one word


def test_self_rouge_l_means_pairs_then_prompts():
    groups = [["x y", "x y", "x y"],                     # identical samples: 1
              ["a b", "a c", "d e"]]                     # pairs: 0.5, 0, 0
    assert s.self_rouge_l(groups) == pytest.approx((1 + 0.5 / 3) / 2)
    with pytest.raises(ValueError, match="two samples"):
        s.self_rouge_l([["only one"]])


def test_entropy_of_known_distributions():
    p = torch.tensor([[0.5, 0.25, 0.25, 0.0], [1.0, 0.0, 0.0, 0.0]])
    h = s.token_entropy(p.log())
    assert h[0].item() == pytest.approx(1.5 * math.log(2), rel=1e-6) and h[1].item() == 0.0
    uniform = torch.full((3, 50), -math.log(50.0))
    assert torch.allclose(s.token_entropy(uniform), torch.full((3,), math.log(50.0)), rtol=1e-5)


def _series(points):
    return [dict(interactions=i, entropy_ratio=e, self_rouge_l=r, logprob_drift=d) for i, e, r, d in points]


@pytest.mark.parametrize("points, onset", [
    ([(0, 1, .5, 0), (100, .61, .85, 2.0), (200, .6, .5, 0)], None),          # every value at its threshold: no alarm
    ([(0, 1, .5, 0), (100, .9, .5, 0), (200, .59, .5, 0)], 200),              # entropy ratio
    ([(0, 1, .5, 0), (100, .9, .851, 0), (200, .5, .9, 0)], 100),             # self-ROUGE-L first
    ([(0, 1, .5, 2.01), (100, 1, .5, 0)], 0),                                  # log-prob drift at the start
])
def test_collapse_onset_on_hand_built_series(points, onset):
    assert s.collapse_onset(_series(points)) == onset


def test_collapse_alarms_needs_the_three_quantities():
    with pytest.raises(KeyError, match="self_rouge_l"):
        s.collapse_alarms(dict(entropy_ratio=1.0, logprob_drift=0.0))


def test_grid_design_sizes_and_bad_names():
    assert len(s.grid_design("full")) == 48 and len(s.grid_design("reduced")) == 21
    assert len({s.run_key(c) for c in s.grid_design("full")}) == 48
    with pytest.raises(KeyError, match="teachers are"):
        s.grid_cells(teachers=("lagged",))
    with pytest.raises(ValueError, match="full"):
        s.grid_design("tiny")


def fake_run(calls):
    def run(cell, n, every, probe):
        calls.append(s.run_key(cell))
        hist = [dict(interactions=k, win=0.5 + k / 1000, entropy_ratio=1 - k / 100, kl_base=0.0, max_drift=0.0, self_rouge_l=0.5,
                     logprob_drift=0.0) for k in range(0, n + 1, every)]
        return dict(cell=cell, n_interactions=n, every=every, seconds=1.0, history=hist)
    return run


def test_run_grid_caches_and_skips_finished_runs(tmp_path):
    cells = s.grid_cells(teachers=("live", "frozen"), anchors=("anchor on",), lrs=(1e-3,), seeds=(0, 1))
    calls = []
    first = s.run_grid(cells[:3], tmp_path, 100, 50, probe=object(), progress=False, run=fake_run(calls))
    assert len(calls) == 3 and len(list(tmp_path.glob("*.json"))) == 3 and not list(tmp_path.glob("*.part"))
    second = s.run_grid(cells, tmp_path, 100, 50, probe=object(), progress=False, run=fake_run(calls))   # resumes
    assert calls[3:] == [s.run_key(cells[3])] and second[:3] == first
    with pytest.raises(ValueError, match="another results folder"):
        s.run_grid(cells, tmp_path, 200, 50, probe=object(), progress=False, run=fake_run(calls))
    summ = s.summarise(second)
    assert summ["interactions"] == [0, 50, 100] and all(r["onset"] == 50 for r in summ["runs"].values())   # ratio 0.5 at 50
    curves = s.cell_curves(summ, "win")
    assert set(curves) == {("live", "anchor on", 1e-3), ("frozen", "anchor on", 1e-3)}
    np.testing.assert_allclose(curves[("live", "anchor on", 1e-3)]["mean"], [0.5, 0.55, 0.6])
    assert json.loads(json.dumps(summ)) == summ


@pytest.fixture(scope="module")
def world():
    from hindsight_ref.toyworld.model import load_world
    return load_world()


def test_probe_reads_zero_against_itself_and_a_real_run_moves_it(world):
    base, tok = world
    probe = s.StabilityProbe(base, tok, n=32, n_rouge=4, n_kl=8)
    at0 = probe(base)
    assert (at0["entropy_ratio"], at0["logprob_drift"], at0["max_drift"], at0["kl_base"]) == (1.0, 0.0, 0.0, 0.0)
    assert 0 < at0["entropy"] < math.log(len(tok)) and at0["logprob"] < 0
    res = s.stability_run(dict(teacher="live", anchor="anchor off", lr=3e-3, seed=0), 30, 30, probe)
    last = res["history"][-1]
    assert [h["interactions"] for h in res["history"]] == [0, 30] and last["kl_base"] > 0 and last["entropy_ratio"] != 1.0


def test_a_run_claimed_by_a_live_process_is_left_to_it(tmp_path):
    import os, subprocess, sys
    path = tmp_path / "live_anchor-on_lr0.001_seed0.json"
    path.with_suffix(".claim").write_text(str(os.getppid()))            # a live process that is not this one
    assert not s.claim_run(path)
    calls = []
    cells = s.grid_cells(teachers=("live",), anchors=("anchor on",), lrs=(1e-3,), seeds=(0,))
    assert s.run_grid(cells, tmp_path, 100, 50, probe=object(), progress=False, run=fake_run(calls)) == [] and not calls
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    path.with_suffix(".claim").write_text(dead)                           # its owner stopped: the run is taken over
    assert len(s.run_grid(cells, tmp_path, 100, 50, probe=object(), progress=False, run=fake_run(calls))) == 1 and len(calls) == 1
    assert path.exists() and not path.with_suffix(".claim").exists()
