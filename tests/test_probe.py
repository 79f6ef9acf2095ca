"The probe: bootstrap intervals that cover, verdicts known by construction, the toy world's model reads hindsight, the files round-trip."
import json, math

import numpy as np
import pytest
import torch

from hindsight_ref.data import fixture_interactions, control_interactions
from hindsight_ref.signal import separation_stats
from hindsight_ref.probe import (bootstrap_ci, mean_of, ratio_of_means, share_greater, share_negative, ProbeSource, ProbeReport,
                                 probe_signals, probe_stats, probe_source, verdict, run_probe, spread, A_FLOOR)


def test_bootstrap_interval_covers_the_true_mean():
    # 300 samples of 40 exponential draws (mean 2): a 95% interval should contain 2 about 95% of the time;
    # the count is binomial(300, 0.95), so 0.90 .. 0.985 holds with probability > 0.999 for a correct interval
    rng = np.random.default_rng(0)
    hits = [(lambda c: c["low"] <= 2.0 <= c["high"])(bootstrap_ci(mean_of, rng.exponential(2.0, 40), n_resamples=1000, seed=s))
            for s in range(300)]
    assert 0.90 <= np.mean(hits) <= 0.985, np.mean(hits)


def test_ratio_interval_of_exchangeable_samples_contains_one():
    rng = np.random.default_rng(1)
    hits = [(lambda c: c["low"] <= 1.0 <= c["high"])(bootstrap_ci(ratio_of_means, *rng.lognormal(0, 1, (2, 60)), n_resamples=1000, seed=s))
            for s in range(300)]
    assert 0.90 <= np.mean(hits) <= 0.99, np.mean(hits)


def test_bootstrap_is_paired_seeded_and_checks_its_input():
    r, c = np.arange(1.0, 11.0), np.arange(1.0, 11.0) + 0.5
    a, b = bootstrap_ci(share_greater, r, c, seed=3), bootstrap_ci(share_greater, r, c, seed=3)
    assert a == b == dict(estimate=0.0, low=0.0, high=0.0)          # paired: c > r in every row of every resample
    assert bootstrap_ci(share_negative, [-1.0, -2.0, 3.0])["estimate"] == pytest.approx(2 / 3)
    assert math.isnan(bootstrap_ci(ratio_of_means, [1.0, 1.0], [0.0, 0.0])["low"])   # undefined in every resample: NaN, no crash
    with pytest.raises(ValueError, match="at least 2 interactions"): bootstrap_ci(mean_of, [1.0])
    with pytest.raises(ValueError, match="one length"): bootstrap_ci(ratio_of_means, [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="level"): bootstrap_ci(mean_of, [1.0, 2.0], level=95)


def test_spread_takes_first_last_and_even_steps():
    assert spread(list(range(10)), 3) == [0, 4, 9] and spread([1, 2], None) == [1, 2] and spread([1, 2], 5) == [1, 2]


@pytest.fixture(scope="module")
def fixture4():
    its = fixture_interactions()[:4]
    return its, control_interactions(its, kind="unrelated")


def _source(its, ctrl, same=False):
    return ProbeSource("fixture[:4]", its, {"unrelated": ctrl, **({"same": its} if same else {})}, [True] * len(its))


def test_a_model_that_ignores_its_context_gives_zero_advantage_and_its_verdict(tiny, fixture4):
    model, tok = tiny
    blind = type(model)(model.config)                           # same shape; attention outputs zeroed: no position sees another
    blind.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer in blind.model.layers: layer.self_attn.o_proj.weight.zero_()
    sig = probe_signals(blind.eval(), tok, _source(*fixture4), templates=("paper",), progress=False)["paper"]
    assert max(float(s.advantage.abs().max()) for s in sig["real"] + sig["unrelated"]) < A_FLOOR
    st = probe_stats(sig, [True] * 4, n_resamples=200)
    assert verdict(st["unrelated"]["token"]).startswith("does not read its context")


def test_a_control_identical_to_the_real_follow_up_gives_ratio_one_and_share_zero(tiny, fixture4):
    model, tok = tiny
    its, ctrl = fixture4
    st = probe_stats(probe_signals(model, tok, _source(its, ctrl, same=True), templates=("paper",), progress=False)["paper"],
                     [True] * 4, n_resamples=300)["same"]
    assert st["token"]["ratio"] == dict(estimate=1.0, low=1.0, high=1.0) and st["sequence"]["ratio"]["estimate"] == 1.0
    assert st["token"]["share"] == dict(estimate=0.0, low=0.0, high=0.0)
    assert verdict(st["token"], "same").startswith("does not separate real from same follow-ups: 1x [CI 1-1]")


def test_token_statistics_are_signal_separation_stats(tiny, fixture4):
    model, tok = tiny
    sig = probe_signals(model, tok, _source(*fixture4), templates=("paper", "note"), progress=False)
    assert torch.equal(sig["paper"]["real"][0].logp_student, sig["note"]["real"][0].logp_student)   # one student pass
    for t in ("paper", "note"):
        st, sep = probe_stats(sig[t], [True] * 4, n_resamples=100)["unrelated"]["token"], separation_stats(sig[t]["real"], sig[t]["unrelated"])
        assert st["ratio"]["estimate"] == pytest.approx(sep["ratio"], rel=1e-6)   # separation_stats divides in float32
        assert st["share"]["estimate"] == pytest.approx(sep["share"]) and st["real"]["estimate"] == pytest.approx(sep["real"], rel=1e-6)


def test_verdict_follows_the_rule():
    f = lambda r, lo, hi: dict(ratio=dict(estimate=r, low=lo, high=hi), real=dict(estimate=0.3 * r), control=dict(estimate=0.3))
    assert verdict(f(26.0, 18.0, 35.0)) == "reads hindsight: real/unrelated 26x [CI 18-35]"
    assert verdict(f(0.98, 0.91, 1.06)) == "does not separate real from unrelated follow-ups: 0.98x [CI 0.91-1.06]"
    assert verdict(f(0.7, 0.6, 0.8)).startswith("does not read hindsight: the unrelated follow-up moves y more")
    assert verdict(f(1.0, None, None)).startswith("does not separate")          # undefined interval: no claim


def test_the_toy_world_model_reads_hindsight_and_the_files_round_trip(tmp_path):
    rep = run_probe("toyworld", tmp_path, n=24, templates=("paper", "note"), n_resamples=500, progress=False)
    r = rep.stats["paper"]["unrelated"]["token"]["ratio"]
    assert r["low"] > 1 and rep.verdict.startswith("reads hindsight: real/unrelated"), rep.verdict
    assert rep.stats["paper"]["unrelated"]["criticised"]["negative_real"]["estimate"] > 0.9   # complaints lower sum A
    assert {p.name for p in tmp_path.iterdir()} == {"probe.html", "probe.json", "ratios.png", "strip.png"}
    assert ProbeReport.load(tmp_path / "probe.json") == rep
    assert ProbeReport.from_dict(json.loads(json.dumps(rep.to_dict()))) == rep
    page = (tmp_path / "probe.html").read_text()
    assert rep.verdict in page and page.count("data:image/png;base64,") == 2 and "Rule." in page


def test_smollm2_probe_runs_offline_and_its_verdict_matches_its_interval(tmp_path):
    rep = run_probe("smollm2-135m-instruct", tmp_path, n=3, templates=("paper",), controls=("unrelated",), n_resamples=300,
                    progress=False)
    r = rep.stats["paper"]["unrelated"]["token"]["ratio"]
    assert rep.n == 3 and rep.source == "fixture" and r["low"] <= r["estimate"] <= r["high"]
    expected = "reads" if r["low"] > 1 else "does not read hindsight" if r["high"] < 1 else "does not separate"
    assert rep.verdict.startswith(expected), (rep.verdict, r)
    assert ProbeReport.load(tmp_path / "probe.json") == rep


def test_bad_arguments_fail_before_loading(tmp_path):
    with pytest.raises(KeyError, match="Unknown hindsight template 'papr'"): run_probe("no-such-model", tmp_path, templates=("papr",))
    with pytest.raises(ValueError, match="n must be at least 2"): run_probe("no-such-model", tmp_path, n=1)
    with pytest.raises(ValueError, match="Unknown controls"): probe_source("fixture", "m", 4, controls=("sarcasm",))
    with pytest.raises(ValueError, match="Unknown interaction source"): probe_source("nowhere", "m", 4)
