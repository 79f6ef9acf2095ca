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
    assert [viz.display_token(t) for t in ["\n", " ", "", "\t", "a b", "😀", "❤\ufe0f", "\x07"]] == \
        ["↵", "␣", "∅", "⇥", "a b", "😀", "❤", "□"]
    assert [viz.text_width(t) for t in ["ab", "😀", "a🚀"]] == [2, 2, 3]


def test_char_spans_group_the_tokens_of_one_character():
    assert viz.char_spans(["a", "", "", " 😀", "b"]) == [(0, 1), (1, 4), (4, 5)]
    assert viz.char_spans(["", "  ", "x", ""]) == [(0, 1), (1, 2), (2, 3), (3, 4)]   # before ASCII, or at the end: alone
    lay = viz.layout_tokens(["a", "∅", "∅", " 😀"], width=40, pad=0, gap=1, spans=[(0, 1), (1, 4)])
    assert [x for x, _, _ in lay] == [0.0, 2.0, 3.0, 4.0] and all(w == 1.0 for _, _, w in lay[1:])   # touching cells


def _emoji_signal(tok, text="Hi 😀 team 🎉!"):
    from hindsight_ref.signal import token_strings
    ids = tok(text, add_special_tokens=False)["input_ids"]
    strs = token_strings(tok, ids)
    return make_signal(strs, [-1.0] * len(strs), ids=ids), ids, strs


def test_token_strip_draws_a_byte_split_emoji_as_itself(tok):
    "SmolLM2's byte-level BPE writes an emoji as several tokens: one label, the emoji itself, over their framed cells."
    sig, ids, strs = _emoji_signal(tok)
    assert "" in strs and "".join(strs) == "Hi 😀 team 🎉!"                  # the tokenizer does split them
    ax = viz.token_strip(sig, colorbar=False)
    labels = [t.get_text() for t in ax.texts if t.get_gid() == "token"]
    assert labels == [viz.display_token(strs[b - 1]) for a, b in viz.char_spans(strs)]
    assert any("😀" in l for l in labels) and any("🎉" in l for l in labels)
    assert not any(l == viz.EMPTY_GLYPH or viz.MISSING_GLYPH in l for l in labels)
    assert len(ax.collections[0].get_paths()) == len(ids)                     # every token keeps its own cell
    spans = [p for p in ax.patches if p.get_gid() == "char_span"]
    assert len(spans) == sum(b - a > 1 for a, b in viz.char_spans(strs)) >= 1


def test_emoji_glyphs_render_with_the_emoji_font(tok):
    "The outline emoji font (dev dependency manimgx-fonts) is registered and drawing needs no missing-glyph fallback."
    import warnings
    from matplotlib.ft2font import FT2Font
    from matplotlib import font_manager
    assert viz.emoji_font() == "Noto Emoji", "install the dev dependency manimgx-fonts (make env)"
    assert ord("😀") in FT2Font(font_manager.findfont(viz.emoji_font())).get_charmap()
    ax = viz.token_strip(_emoji_signal(tok)[0], colorbar=False)
    assert all(t.get_fontfamily() == viz.font_family() for t in ax.texts if t.get_gid() == "token")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # matplotlib warns "Glyph ... missing from font(s)"
        ax.figure.canvas.draw()


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
    assert axes[1].get_title(loc="left").startswith("control follow-up o:")          # no meta["control"]: "control"
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
    real = [make_signal(list("abc"), [-5.0, 1.0, 0.0]), make_signal(list("ab"), [2.0, -1.0], o="No emojis.")]
    ctrl = [make_signal(list("abc"), [0.0, 0.0, 0.0], o="27*4?"), make_signal(list("ab"), [0.0, 0.1], o="Name a fish.")]
    axes = viz.control_heatmaps(real, ctrl)
    assert len(axes) == 2 and len(axes[0].figure.axes) == 3
    assert axes[0].images[0].norm.vmin == axes[1].images[0].norm.vmin == -15.0
    assert "mean |A| = 1.75" in axes[0].get_title()      # mean over interactions of (2.0, 1.5)
    with pytest.raises(ValueError, match="pair each interaction"):
        viz.control_heatmaps(real, ctrl[:1])


def test_control_heatmaps_label_each_panel_with_its_own_follow_ups():
    "Each panel's rows name that panel's follow-ups (a shared y axis would stamp the control's onto the real panel)."
    real = [make_signal(list("abc"), [-5.0, 1.0, 0.0]), make_signal(list("ab"), [2.0, -1.0], o="No emojis.")]
    ctrl = [make_signal(list("abc"), [0.0] * 3, o="27*4?"), make_signal(list("ab"), [0.0, 0.1], o="Name a fish.")]
    axes = viz.control_heatmaps(real, ctrl)
    axes[0].figure.canvas.draw()
    ticks = [[t.get_text() for t in ax.get_yticklabels() if t.get_visible()] for ax in axes]
    assert ticks == [["0: Get to the point.", "1: No emojis."], ["0: 27*4?", "1: Name a fish."]]
    t0, t1 = (ax.title.get_window_extent() for ax in axes)
    assert not t0.overlaps(t1)                                             # the two titles do not run into each other
    assert axes[1].get_title().startswith("control follow-ups\n")          # no meta["control"]: not "control ... (control)"
    for c in ctrl: c.interaction.meta["control"] = "unrelated"
    assert viz.control_heatmaps(real, ctrl)[1].get_title().startswith("unrelated follow-ups (control)")
    labels = ["first", "second"]                                           # labels= names the rows of both panels
    assert [[t.get_text() for t in ax.get_yticklabels()] for ax in viz.control_heatmaps(real, ctrl, labels=labels)] == [labels] * 2


def _topk_signal():
    ids = torch.tensor([[104, 7, 8], [7, 8, 9]])
    sig = make_signal(["Good", " question"], [math.log(0.01 / 0.5), 0.0], ids=[104, 105],
                      logp_student=torch.tensor([0.5, 0.3]).log(),
                      topk_ids=ids, topk_p_student=torch.tensor([[0.5, 0.2, 0.1], [0.6, 0.2, 0.1]]),
                      topk_p_teacher=torch.tensor([[0.01, 0.7, 0.15], [0.1, 0.1, 0.5]]))
    return sig


class FakeTok:
    V = {7: " Yes", 8: "\n", 9: " No", 104: "Good", 105: " question"}
    def decode(self, ids): return "".join(self.V[i] for i in ids)
    def convert_ids_to_tokens(self, i): return self.V[i]


def test_distribution_shift_paired_bars_and_highlight():
    sig = _topk_signal()
    ax = viz.distribution_shift(sig, 0, tokenizer=FakeTok())
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [b.get_label() for b in bars] == ["student  p(· | x, y<i)", "teacher  p(· | x, o, y<i)"]
    assert not [c for c in ax.collections if c.get_gid() == "tiny"]                 # nothing below 1e-3 here
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
    assert len(bars) == 3 and bars[2].get_label().startswith("trained student")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["“#7”", "“ question”"]         # ranked 3rd, kept within k=2 in place of the 2nd candidate
    np.testing.assert_allclose([r.get_width() for r in bars[0]], [0.6, 0.3], atol=1e-6)
    np.testing.assert_allclose([r.get_width() for r in bars[1]], [0.1, 0.3], atol=1e-6)
    np.testing.assert_allclose([r.get_width() for r in bars[2]], [0.6, 0.25], atol=1e-6)


def test_distribution_shift_control_series_and_tiny_marking():
    "The control's teacher probabilities as a third series; candidates the student gives < tiny are marked."
    sig = _topk_signal()
    ctrl = _topk_signal()
    ctrl.topk_p_teacher = torch.tensor([[0.45, 0.25, 5e-4], [0.6, 0.2, 0.1]])
    ctrl.logp_teacher = torch.tensor([0.45, 0.3]).log()
    ax = viz.distribution_shift(sig, 0, tokenizer=FakeTok(), control=ctrl, tiny=0.15)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert bars[2].get_label() == "control teacher  p(· | x, o', y<i)"
    # rows: " Yes" (7), "Good" (104), "\n" (8), rest; the control teacher at those candidates, and its rest
    np.testing.assert_allclose([r.get_width() for r in bars[2]], [0.25, 0.45, 5e-4, 1 - 0.7005], rtol=1e-6)
    tiny = [c for c in ax.collections if c.get_gid() == "tiny"]
    assert len(tiny) == 1 and tiny[0].get_offsets()[:, 1].tolist() == [2.0]        # student p("\n") = 0.1 < 0.15
    assert any("tiny numbers" in t.get_text() for t in ax.get_legend().get_texts())
    assert [t.get_text() for t in ax.texts if t.get_gid() == "p_sampled"] == ["0.5", "0.01", "0.45"]


def test_distribution_shift_labels_split_characters(tok):
    "Inside a byte-split emoji the sampled token reads as its character and part; the first bytes of one as bytes."
    import re
    sig, ids, strs = _emoji_signal(tok)
    (a, b), (a2, _) = [(a, b) for a, b in viz.char_spans(strs) if b - a > 1][:2]
    T = len(ids)
    sig.topk_ids = torch.tensor([[ids[i], ids[a2], ids[0]] for i in range(T)])      # y_i, another emoji's first bytes, "Hi"
    sig.topk_p_student = torch.tensor([[0.5, 0.3, 0.1]] * T); sig.topk_p_teacher = torch.tensor([[0.5, 0.3, 0.1]] * T)
    labels = lambda ax: [t.get_text() for t in ax.get_yticklabels()]
    lab = labels(viz.distribution_shift(sig, a, tokenizer=tok, show_rest=False))
    assert lab[0] == f"“{viz.display_token(strs[b - 1])} 1/{b - a}”"              # e.g. “ 😀 1/2”
    assert re.fullmatch(r"“‹[0-9A-F]{2}( [0-9A-F]{2})*›”", lab[1]), lab[1]          # bytes, never "�"
    assert lab[2] == "“Hi”"
    lab = labels(viz.distribution_shift(sig, b - 1, tokenizer=tok, show_rest=False))
    assert lab[0] == f"“{viz.display_token(strs[b - 1])}”" and not any("\ufffd" in l for l in lab)


def test_distribution_shift_errors():
    with pytest.raises(ValueError, match="top_k="):
        viz.distribution_shift(make_signal(TOKENS, A_VALS), 0)
    with pytest.raises(IndexError, match="outside the completion"):
        viz.distribution_shift(_topk_signal(), 5)
    no_topk = make_signal(["Good", " question"], [0.0, 0.0], ids=[104, 105])       # what student= reuse gives
    with pytest.raises(ValueError, match=r"The `control` Signal holds no top-k.*top_k=10"):
        viz.distribution_shift(_topk_signal(), 0, control=no_topk)
    with pytest.raises(ValueError, match="keep y fixed"):
        viz.distribution_shift(_topk_signal(), 0, after=make_signal(["Good"], [0.0]))


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


def test_plot_separation_ladder(tiny, tok, tmp_path):
    "From separation_ladder's own rows (a tiny model saved to a folder: the hub path, offline) to the drawn points."
    from hindsight_ref.signal import separation_ladder
    from hindsight_ref.data import control_interactions
    model, _ = tiny
    model.save_pretrained(tmp_path / "tiny"); tok.save_pretrained(tmp_path / "tiny")
    its = [Interaction(x=[{"role": "user", "content": "Name a colour."}], y="Blue! 😀", o="No emojis.",
                       meta={"unrelated_followup": "What is 27*4?"}),
           Interaction(x=[{"role": "user", "content": "Is water wet?"}], y="Yes, it is.", o="Answer YES or NO only.",
                       meta={"unrelated_followup": "Name a fish."})]
    rows = []
    for kind in ("unrelated", "approval"):
        rows += [r | dict(control=kind) for r in separation_ladder([str(tmp_path / "tiny")], its,
                                                                    control_interactions(its, kind=kind), progress=False)]
    ax = viz.plot_separation_ladder(rows)
    ratio = [l for l in ax.lines if l.get_gid() == "ratio"]
    n = sum(p.numel() for p in model.parameters())
    assert [l.get_xydata().tolist() for l in ratio] == [[[n, r["paper"]["ratio"]]] for r in rows]
    tw = [a for a in ax.figure.axes if a is not ax][0]
    assert [l.get_ydata().tolist() for l in tw.lines if l.get_gid() == "share"] == [[r["paper"]["share"]] for r in rows]
    assert [t.get_text() for t in ax.texts if t.get_gid() == "model"] == ["tiny"]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    with pytest.raises(KeyError, match="no template 'turns'"):
        viz.plot_separation_ladder(rows, template="turns")
    with pytest.raises(ValueError, match="No rows"):
        viz.plot_separation_ladder([])


def test_plot_metric_leaves_out_skipped_and_missing():
    recs = [dict(step=1, loss=0.9), dict(step=2, loss=float("inf")), dict(step=3, loss=0.5, skipped=True), dict(step=4),
            dict(step=5, loss=0.4)]
    ax = viz.plot_metric(recs, "loss", label="train")
    assert ax.lines[0].get_xydata().tolist() == [[1.0, 0.9], [5.0, 0.4]] and ax.lines[0].get_label() == "train"
    assert ax.get_xlabel() == "optimizer step" and ax.get_ylabel() == "loss"


def test_heatmap_labels_draw_emoji_in_follow_ups():
    sigs = [make_signal(list("ab"), [1.0, -1.0], o="No emojis 🙅 please")]
    ax = viz.advantage_heatmap(sigs)
    lab = ax.get_yticklabels()[0]
    assert lab.get_text() == "0: No emojis 🙅 please" and lab.get_fontfamily() == viz.font_family("DejaVu Sans")


def test_every_plot_draws_on_a_given_axis():
    sig = _topk_signal()
    for f, args in [(viz.token_strip, (sig,)), (viz.advantage_heatmap, ([sig, sig],)),
                    (viz.distribution_shift, (sig, 0)), (viz.before_after_tokens, (sig, sig)),
                    (viz.before_after_scatter, ([sig], [sig])), (viz.plot_metric, ([dict(step=1, loss=1.0)],)),
                    (viz.plot_separation_ladder, ([dict(model="m", n_params=10, paper=dict(ratio=1.0, share=0.5))],))]:
        fig, ax = plt.subplots()
        assert f(*args, ax=ax) is ax, f.__name__
    fig, axes = plt.subplots(2, 1)
    assert viz.control_panel(sig, sig, axes=axes) is not None
    fig, axes = plt.subplots(1, 2)
    assert len(viz.control_heatmaps([sig], [sig], axes=axes)) == 2
