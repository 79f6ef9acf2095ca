"The main job: a reduced demo runs end to end and writes its report; the claims it checks fail when they should."
import html, json

import pytest

from hindsight_ref import demo


def test_a_reduced_demo_writes_the_report(tmp_path):
    res = demo.run_demo(out=tmp_path, n=1, max_rows=4, n_interactions=20, n_eval=32, quiet=True, check=False)
    page = tmp_path / "report.html"
    assert res["report"] == page and page.exists()
    text = page.read_text()
    assert text.count("<img") == 5 and "data:image/png;base64," in text and "Reading:" in text
    numbers = json.loads((tmp_path / "report.json").read_text())
    w = numbers["world"]
    assert w["separation"] > 5 and 0 <= w["win_curve"][-1][1] <= 1 and [k for k, _ in w["win_curve"]] == [0, 20]
    assert w["kl_after"] < w["kl_before"] and w["n_criticised"] > 0
    assert numbers["real_model"]["n"] == 1 and "separate" in numbers["real_model"]["reading"]
    assert len((tmp_path / "signals.jsonl").read_text().splitlines()) == 1
    for name in ("signal", "shift_before", "win_rate", "shift_after", "real_model"): assert (tmp_path / f"{name}.png").stat().st_size > 5_000
    assert numbers["run"]["command"] == "run_demo(n=1, out=%r, max_rows=4, n_interactions=20, n_eval=32, quiet=True, check=False)" % tmp_path
    assert numbers["run"]["version"] in text and "What next" in text and "--model" in text and "KL anchor" in text


def test_without_the_embedded_model_the_toy_world_still_reports(tmp_path, monkeypatch, capsys):
    from hindsight_ref import models
    monkeypatch.setitem(models.EMBEDDED, "absent-model", models.EmbeddedModel("no_such_package", "no-such-package==1.0", "m.gguf"))
    (tmp_path / "signals.jsonl").write_text("{}\n")                     # an earlier run's: must not survive as if it were this one's
    res = demo.run_demo("absent-model", out=tmp_path, n_interactions=10, n_eval=16, check=False)
    install = models.EMBEDDED["absent-model"].install
    assert res["real_model"] is None and res["skipped"].endswith(f"`{install}`") and "absent-model" in res["skipped"]
    last = capsys.readouterr().out.strip().splitlines()
    assert any(line == f"[4] not run. {res['skipped']}" for line in last) and "[1] toy world" in "\n".join(last)
    page = (tmp_path / "report.html").read_text()
    assert page.count("<img") == 4 and f"<code>{html.escape(install)}</code>" in page and "What next" in page
    assert json.loads((tmp_path / "report.json").read_text())["real_model"] is None and not (tmp_path / "signals.jsonl").exists()


def _world(separation=30.0, final_win=0.9, kl_before=2.0, kl_after=0.2):
    return {"numbers": dict(separation=separation, win_curve=[(0, 0.5), (150, final_win)], kl_before=kl_before, kl_after=kl_after)}


@pytest.mark.parametrize("kw, failing", [({}, []), (dict(separation=9.0), ["separation"]), (dict(final_win=0.84), ["win rate"]),
                                         (dict(kl_after=0.5), ["KL"]), (dict(separation=2.0, final_win=0.1), ["separation", "win rate"])])
def test_the_claims_fail_when_they_should(kw, failing):
    bad = demo.check_claims(_world(**kw))
    assert len(bad) == len(failing) and all(f in b for f, b in zip(failing, bad))


def test_reading_a_separation():
    good = dict(ratio=3.0, share=0.9)
    assert demo.read_separation(good, dict(ratio=2.0, share=0.8)).startswith("reads the follow-up")
    assert demo.read_separation(dict(ratio=0.98, share=0.6), dict(ratio=1.04, share=0.5)).startswith("does not separate")
    assert demo.read_separation(good, dict(ratio=1.1, share=0.5)).startswith("does not separate")   # both controls must separate
