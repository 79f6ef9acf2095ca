"Plots of the hindsight signal: each test checks what was drawn (artists, colours of tokens of known sign, limits, labels)."
import math
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.container import BarContainer

from hindsight_ref import viz
from hindsight_ref.data import Interaction

try:
    from hindsight_ref.signal import Signal
except ImportError:  # pragma: no cover - the plots only read attributes; a stand-in keeps these tests independent
    from dataclasses import dataclass

    @dataclass
    class Signal:
        interaction: object
        template: str
        token_ids: list
        tokens: list
        logp_student: torch.Tensor
        logp_teacher: torch.Tensor
        advantage: torch.Tensor
        topk_ids: torch.Tensor = None
        topk_p_student: torch.Tensor = None
        topk_p_teacher: torch.Tensor = None


def make_signal(tokens, A, o="Get to the point.", ids=None, logp_student=None, **kw):
    A = torch.tensor(A, dtype=torch.float32)
    lp_s = torch.full((len(tokens),), -0.5) if logp_student is None else torch.as_tensor(logp_student, dtype=torch.float32)
    it = Interaction(x=[{"role": "user", "content": "Should I standardize features?"}], y="".join(tokens) or "y", o=o)
    return Signal(interaction=it, template="paper", token_ids=list(ids or range(100, 100 + len(tokens))), tokens=list(tokens),
                  logp_student=lp_s, logp_teacher=lp_s + A, advantage=A, **kw)


TOKENS = ["Good", " question", "!", "\n", "Yes", ",", " standardize", "", "  ", "<|im_end|>"]
A_VALS = [-9.0, -4.0, -1.0, 0.0, 2.5, 0.0, 1.0, -20.0, 10.0, 0.0]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def is_red(c): return c[0] > c[2] + 0.02
def is_blue(c): return c[2] > c[0] + 0.02
def is_white(c): return np.allclose(c[:3], 1.0, atol=0.05)   # RdBu is (0.97, 0.97, 0.97) at its centre


def test_norm_and_cmap_follow_the_paper():
    norm, cmap = viz.advantage_norm(), viz.advantage_cmap()
    np.testing.assert_allclose(norm(np.array([-15.0, 0.0, 3.0, -100.0, 100.0])), [0, 0.5, 1, 0, 1])
    assert is_red(cmap(norm(-1.0))) and is_blue(cmap(norm(0.5))) and is_white(cmap(norm(0.0)))
    with pytest.raises(ValueError, match="vmin < center < vmax"):
        viz.advantage_norm(vmin=0, vmax=3)


def test_display_token_glyphs():
    assert [viz.display_token(t) for t in ["\n", " ", "", "\t", "a b", "😀"]] == ["↵", "␣", "∅", "⇥", "a b", "□"]


def test_token_strip_draws_one_box_and_one_text_per_token():
    sig = make_signal(TOKENS, A_VALS)
    ax = viz.token_strip(sig)
    coll = ax.collections[0]
    fc = coll.get_facecolors()
    assert len(coll.get_paths()) == len(TOKENS)
    texts = [t for t in ax.texts if t.get_gid() == "token"]
    assert [t.get_text() for t in texts] == ["Good", " question", "!", "↵", "Yes", ",", " standardize", "∅", "␣␣", "<|im_end|>"]
    for j, a in enumerate(A_VALS):
        if a < 0: assert is_red(fc[j]), (j, a, fc[j])
        elif a > 0: assert is_blue(fc[j]), (j, a, fc[j])
        else: assert is_white(fc[j]), (j, a, fc[j])
    # clipped like the paper: -20 gets the same colour as -15, +10 the same as +3
    cm, norm = coll.get_cmap(), coll.norm
    np.testing.assert_allclose(fc[7], cm(norm(-15.0)))
    np.testing.assert_allclose(fc[8], cm(norm(3.0)))
    assert (norm.vmin, norm.vmax, norm.vcenter) == (-15.0, 3.0, 0.0)
    # darkest boxes get white text, pale ones black
    assert texts[7].get_color() == "white" and texts[3].get_color() == "black"
    # the shared figure has one colorbar with arrows at both ends (values were clipped)
    fig = ax.figure
    assert len(fig.axes) == 2
    cbar = fig.axes[1]
    assert "A_i" in cbar.get_xlabel()


def test_token_strip_wraps_lines_and_breaks_after_newlines():
    sig = make_signal(["ab"] * 30 + ["\n", "cd"], [0.0] * 32)
    ax = viz.token_strip(sig, width=20, colorbar=False)
    ys = sorted({round(p.get_extents().y0, 3) for p in ax.collections[0].get_paths()})
    lay = viz.layout_tokens([viz.display_token(t) for t in sig.tokens], 20, ["\n" in t for t in sig.tokens])
    assert lay[-1][0] == 0.0 and lay[-1][1] == lay[-2][1] + 1      # "cd" starts a new line after "↵"
    assert max(x + w for x, _, w in lay) <= 20
    assert len(ys) == lay[-1][1] + 1
    assert len(ax.figure.axes) == 1


def test_token_strip_limits_max_tokens_and_existing_axis():
    sig = make_signal(TOKENS, A_VALS)
    fig, ax0 = plt.subplots(figsize=(6, 1.5))
    ax = viz.token_strip(sig, ax=ax0, vmin=-2, vmax=2, max_tokens=4, colorbar=False)
    assert ax is ax0
    assert len(ax.collections[0].get_paths()) == 4
    assert ax.collections[0].norm.vmin == -2 and ax.collections[0].norm.vmax == 2
    assert any(t.get_gid() == "more" and "6 more" in t.get_text() for t in ax.texts)


def test_token_strip_rejects_wrong_lengths():
    sig = make_signal(TOKENS, A_VALS)
    with pytest.raises(ValueError, match="one value per completion token"):
        viz.token_strip(sig, values=np.zeros(3))


def test_token_strip_text_is_not_mathtext():
    sig = make_signal(["costs $5", " or $6"], [0.0, 0.0])
    ax = viz.token_strip(sig, colorbar=False)
    ax.figure.canvas.draw()   # would raise or typeset as maths if parsed
    assert all(not t.get_parse_math() for t in ax.texts)


def test_control_panel_shares_one_scale_and_one_colorbar():
    real = make_signal(TOKENS, A_VALS)
    ctrl = make_signal(TOKENS, [0.0] * len(TOKENS), o="What is 27*4?")
    axes = viz.control_panel(real, ctrl)
    assert len(axes) == 2 and len(axes[0].figure.axes) == 3
    c0, c1 = axes[0].collections[0], axes[1].collections[0]
    assert (c0.norm.vmin, c0.norm.vmax) == (c1.norm.vmin, c1.norm.vmax) == (-15.0, 3.0)
    assert all(is_white(c) for c in c1.get_facecolors())
    assert is_red(c0.get_facecolors()[0]) and "27*4" in axes[1].get_title(loc="left")
    assert "Get to the point" in axes[0].get_title(loc="left")


def test_control_panel_requires_the_same_completion():
    real = make_signal(TOKENS, A_VALS)
    other = make_signal(TOKENS[:-1], A_VALS[:-1])
    with pytest.raises(ValueError, match="keep y fixed"):
        viz.control_panel(real, other)


def test_advantage_matrix_pads_with_nan():
    sigs = [make_signal(["a", "b", "c"], [1.0, -1.0, 0.0]), make_signal(["a"], [2.0])]
    M = viz.advantage_matrix(sigs)
    assert M.shape == (2, 3) and np.isnan(M[1, 1:]).all() and M[1, 0] == 2.0
    assert viz.advantage_matrix(sigs, max_tokens=2).shape == (2, 2)
    with pytest.raises(ValueError, match="non-empty"):
        viz.advantage_matrix([])


def test_heatmap_padding_is_blank_and_scale_is_the_papers():
    sigs = [make_signal(list("abcdef"), [-5.0, 1.0, 0.0, 0.0, 0.0, 0.0]), make_signal(list("ab"), [2.0, -1.0])]
    ax = viz.advantage_heatmap(sigs)
    im = ax.images[0]
    arr = im.get_array()
    assert arr.shape == (2, 6) and arr.mask[1, 2:].all() and not arr.mask[0].any()
    rgba = im.to_rgba(arr)
    assert np.allclose(rgba[1, 2:], 1.0)                      # padding: white
    assert is_red(rgba[0, 0]) and is_blue(rgba[0, 1]) and is_blue(rgba[1, 0])
    assert (im.norm.vmin, im.norm.vmax) == (-15.0, 3.0)
    assert ax.get_xlabel() == "completion token position i" and ax.get_ylabel() == "interaction"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0: Get to the point.", "1: Get to the point."]
    assert len([l for l in ax.lines if l.get_gid() == "end"]) == 1   # end marker for the short row


def test_control_heatmaps():
    real = [make_signal(list("abc"), [-5.0, 1.0, 0.0]), make_signal(list("ab"), [2.0, -1.0])]
    ctrl = [make_signal(list("abc"), [0.0, 0.0, 0.0], o="27*4?"), make_signal(list("ab"), [0.0, 0.1], o="27*4?")]
    axes = viz.control_heatmaps(real, ctrl)
    assert len(axes) == 2 and len(axes[0].figure.axes) == 3
    assert axes[0].images[0].norm.vmin == axes[1].images[0].norm.vmin == -15.0
    assert "mean |A| = 1.75" in axes[0].get_title()      # mean over interactions of (2.0, 1.5)
    with pytest.raises(ValueError, match="pair each interaction"):
        viz.control_heatmaps(real, ctrl[:1])


def _topk_signal():
    ids = torch.tensor([[104, 7, 8], [7, 8, 9]])
    sig = make_signal(["Good", " question"], [math.log(0.01 / 0.5), 0.0], ids=[104, 105],
                      logp_student=torch.tensor([0.5, 0.3]).log(),
                      topk_ids=ids, topk_p_student=torch.tensor([[0.5, 0.2, 0.1], [0.6, 0.2, 0.1]]),
                      topk_p_teacher=torch.tensor([[0.01, 0.7, 0.15], [0.1, 0.1, 0.5]]))
    return sig


class FakeTok:
    def decode(self, ids): return {7: " Yes", 8: "\n", 9: " No", 104: "Good", 105: " question"}[ids[0]]


def test_distribution_shift_paired_bars_and_highlight():
    sig = _topk_signal()
    ax = viz.distribution_shift(sig, 0, tokenizer=FakeTok())
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [b.get_label() for b in bars] == ["student  p(· | x, y<i)", "teacher  p(· | x, o, y<i)"]
    np.testing.assert_allclose([r.get_width() for r in bars[0]], [0.2, 0.5, 0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose([r.get_width() for r in bars[1]], [0.7, 0.01, 0.15, 0.14], atol=1e-6)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["“ Yes”", "“Good”", "“↵”", "(all others)"]
    assert ax.get_yticklabels()[1].get_fontweight() == "bold"
    band = [p for p in ax.patches if p.get_gid() == "sampled"]
    assert len(band) == 1 and abs(band[0].get_y() + band[0].get_height() / 2 - 1.0) < 1e-9
    assert ax.get_xlabel() == "probability" and "-3.91" in ax.get_title(loc="left")
    # the sampled token's probabilities are written next to its bars (they are often too small to see)
    assert [t.get_text() for t in ax.texts if t.get_gid() == "p_sampled"] == ["0.5", "0.01"]


def test_distribution_shift_adds_sampled_token_missing_from_topk_and_after():
    sig = _topk_signal()
    # position 1: the sampled token 105 is not among the candidates; its p comes from logp_student/logp_teacher
    after = _topk_signal()
    after.logp_student = torch.tensor([0.1, 0.25]).log()
    ax = viz.distribution_shift(sig, 1, after=after, k=2, show_rest=False)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3 and bars[2].get_label() == "trained student"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["“#7”", "“ question”"]         # ranked 3rd, kept within k=2 in place of the 2nd candidate
    np.testing.assert_allclose([r.get_width() for r in bars[0]], [0.6, 0.3], atol=1e-6)
    np.testing.assert_allclose([r.get_width() for r in bars[1]], [0.1, 0.3], atol=1e-6)
    np.testing.assert_allclose([r.get_width() for r in bars[2]], [0.6, 0.25], atol=1e-6)


def test_distribution_shift_errors():
    with pytest.raises(ValueError, match="top_k="):
        viz.distribution_shift(make_signal(TOKENS, A_VALS), 0)
    with pytest.raises(IndexError, match="outside the completion"):
        viz.distribution_shift(_topk_signal(), 5)


def test_extreme_positions():
    sig = make_signal(TOKENS, A_VALS)
    assert viz.extreme_positions(sig, 2) == [7, 0]
    assert viz.extreme_positions(sig, 1, "positive") == [8]
    with pytest.raises(ValueError, match="which must be"):
        viz.extreme_positions(sig, 1, "biggest")


def test_before_after_tokens_and_scatter():
    b, a = np.array([1.0, 0.5, 0.2]), np.array([0.4, 0.3, 0.2])
    ax = viz.before_after_tokens(b, a, tokens=["x", "\n", "y"])
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), b)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "↵", "y"]
    assert ax.get_ylabel() == viz.KL_LABEL
    # Signals work too: |A| per token
    s0, s1 = make_signal(TOKENS, A_VALS), make_signal(TOKENS, [v / 2 for v in A_VALS])
    ax = viz.before_after_tokens(s0, s1, absolute=True, ylabel="|A_i|")
    np.testing.assert_allclose(ax.lines[1].get_ydata(), np.abs(A_VALS) / 2)
    ax = viz.before_after_scatter([s0, s1], [s1, s1], absolute=True, quantity="mean |A|")
    off = ax.collections[0].get_offsets()
    np.testing.assert_allclose(off[:, 0], [np.mean(np.abs(A_VALS)), np.mean(np.abs(A_VALS)) / 2])
    assert ax.get_title().startswith("1 of 2 below the diagonal")
    assert any(l.get_gid() == "diagonal" for l in ax.lines)
    with pytest.raises(ValueError, match="same completion"):
        viz.before_after_tokens(b, a[:2])


def test_separation_summary_bars_and_ratio():
    real = [make_signal(TOKENS, A_VALS), make_signal(TOKENS, [2 * v for v in A_VALS])]
    ctrl = [make_signal(TOKENS, [0.5] * 10), make_signal(TOKENS, [-0.5] * 10)]
    ax = viz.separation_summary({("smollm2", "paper"): (real, ctrl), ("smollm2", "turns"): (ctrl, ctrl)})
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [b.get_label() for b in bars] == ["real follow-up", "unrelated follow-up"]
    m = np.mean(np.abs(A_VALS))
    np.testing.assert_allclose([r.get_height() for r in bars[0]], [1.5 * m, 0.5])
    np.testing.assert_allclose([r.get_height() for r in bars[1]], [0.5, 0.5])
    assert [t.get_text() for t in ax.texts if t.get_gid() == "ratio"] == [f"×{1.5 * m / 0.5:.2f}", "×1.00"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["smollm2\npaper", "smollm2\nturns"]
    assert "mean" in ax.get_ylabel()
    with pytest.raises(ValueError, match="same, non-zero number"):
        viz.separation_summary({"g": (real, ctrl[:1])})


def test_every_plot_draws_on_a_given_axis():
    sig = _topk_signal()
    for f, args in [(viz.token_strip, (sig,)), (viz.advantage_heatmap, ([sig, sig],)),
                    (viz.distribution_shift, (sig, 0)), (viz.before_after_tokens, (sig, sig)),
                    (viz.before_after_scatter, ([sig], [sig])), (viz.separation_summary, ({"g": ([sig], [sig])},))]:
        fig, ax = plt.subplots()
        assert f(*args, ax=ax) is ax, f.__name__
    fig, axes = plt.subplots(2, 1)
    assert viz.control_panel(sig, sig, axes=axes) is not None
    fig, axes = plt.subplots(1, 2)
    assert len(viz.control_heatmaps([sig], [sig], axes=axes)) == 2


def test_per_token_kl_matches_full_logits(tiny):
    from hindsight_ref.contexts import encode_interactions
    model, tok = tiny
    its = [Interaction(x=[{"role": "user", "content": "Is water wet? Answer YES or NO."}], y="YES, water is wet.",
                       o="I said YES or NO only."),
           Interaction(x=[{"role": "user", "content": "Name a colour."}], y="Blue! 😀", o="No emojis.")]
    kls = viz.per_token_kl(model, tok, its, chunk_size=3)
    for e, kl in zip(encode_interactions(tok, its), kls):
        Ls, Lt, T = len(e.student_context_ids), len(e.teacher_context_ids), len(e.completion_ids)
        with torch.no_grad():
            ls = model(torch.tensor([e.student_context_ids + e.completion_ids])).logits[0, Ls - 1:Ls - 1 + T].log_softmax(-1)
            lt = model(torch.tensor([e.teacher_context_ids + e.completion_ids])).logits[0, Lt - 1:Lt - 1 + T].log_softmax(-1)
        ref = (ls.exp() * (ls - lt)).sum(-1)
        assert kl.shape == (T,)
        torch.testing.assert_close(kl, ref, atol=1e-5, rtol=1e-4)
    assert all((k >= -1e-6).all() for k in kls)                       # a KL is never negative
