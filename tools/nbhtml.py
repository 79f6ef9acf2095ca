"""Cells -> HTML for the docs site: Markdown with math rendered to MathML at build time, highlighted code, outputs.

Math: `$...$` and `$$...$$` in Markdown (never inside code spans or fenced code) become MathML with latex2mathml,
which browsers render natively, so pages need neither a network nor a script. Headings get Pandoc's identifiers
(what Quarto gives), so `#anchors` written for the Quarto site work here too."""
import base64, hashlib, html, re
import xml.etree.ElementTree as ET
import mistune
from latex2mathml.converter import convert as tex_to_mathml
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

# Code is kept as is; `\$` is a literal dollar; inline math may wrap a line, not a paragraph; a closing `$`
# touches its text and precedes no digit ($5 and $6 is not math), as in Pandoc.
_MATH = re.compile(r"""(?P<fence>^[ ]{0,3}(?P<f>```|~~~).*?^[ ]{0,3}(?P=f)[ \t]*$)
                     | (?P<span>(?P<ticks>`+).+?(?P=ticks))
                     | (?P<esc>\\\$)
                     | \$\$(?P<display>.+?)\$\$
                     | \$(?!\s)(?P<inline>(?:[^$\n]|\n(?![ \t]*\n))+?)(?<![\s\\])\$(?!\d)""", re.S | re.M | re.X)
_TOKEN = "\x02M{}\x03"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"  # served from the site itself (offline)
WIDGET = "application/vnd.jupyter.widget-view+json"  # widget state is not saved; Quarto shows nothing either


def slugify(text):
    "Pandoc's auto identifier: lower case, alphanumerics and `_-.` kept, spaces to hyphens, from the first letter."
    s = re.sub(r"[^\w\s.-]", "", html.unescape(re.sub(r"<[^>]+>", "", text)).lower())
    s = re.sub(r"\s+", "-", s.strip())
    return re.sub(r"^[^a-z]+", "", s) or "section"


def page_name(stem):
    "nbdev's page name for a notebook: the numeric prefix dropped, as in hindsight_ref/_modidx.py (90_models -> models)."
    return re.sub(r"^\d+[a-zA-Z0-9]*_", "", stem.lower())


class Renderer(mistune.HTMLRenderer):
    "Markdown -> HTML for one page: heading ids, links to notebooks rewritten to pages, math placeholders."

    def __init__(self, page):
        super().__init__(escape=False)
        self.page, self.math, self.headings = page, [], []

    def heading(self, text, level, **attrs):
        plain = _TOKEN_RE.sub(lambda m: self.math[int(m.group(1))][0], text)
        ident = self.page.new_id(slugify(plain))
        self.headings.append((level, ident, text))
        return f'<h{level} id="{ident}">{text}<a class="anchor" href="#{ident}" aria-label="link to this section">#</a></h{level}>\n'

    def link(self, text, url, title=None):
        return super().link(text, self.page.rewrite_link(url), title)

    def image(self, text, url, title=None):
        return super().image(text, "colab-badge.svg" if url == COLAB_BADGE else url, title)

    def block_code(self, code, info=None):
        return code_html(code, (info or "").split()[0] if info else "")


_TOKEN_RE = re.compile("\x02M(\\d+)\x03")


def markdown_html(text, page):
    "Render Markdown with math as MathML; problems (TeX that does not convert) go to `page.problems`."
    r = Renderer(page)

    def protect(m):
        if m.group("display") is None and m.group("inline") is None: return m.group(0)
        tex, display = (m.group("display"), True) if m.group("display") is not None else (m.group("inline"), False)
        r.math.append((tex, display))
        return _TOKEN.format(len(r.math) - 1)

    body = mistune.create_markdown(renderer=r, plugins=["table", "strikethrough"])(_MATH.sub(protect, text))
    rendered = {}
    math = lambda m: rendered.setdefault(m.group(1), mathml(*r.math[int(m.group(1))], page))
    body = _TOKEN_RE.sub(math, body)
    page.headings += [(lvl, ident, _TOKEN_RE.sub(math, t)) for lvl, ident, t in r.headings]  # the contents list too
    return body


def mathml(tex, display, page):
    "One TeX expression as MathML; TeX that latex2mathml cannot convert is a problem, never shown as `\\foo`."
    try:
        root = ET.fromstring(tex_to_mathml(tex.strip(), display="block" if display else "inline"))
    except Exception as e:  # latex2mathml raises its own exception types for bad TeX
        page.problems.append(f"math that does not render: ${tex}$ ({type(e).__name__}: {e})")
        return f'<code class="tex">{html.escape(tex)}</code>'
    tidy_mathml(root)
    unknown = sorted({e.text for e in root.iter() if (e.text or "").startswith("\\")})
    if unknown: page.problems.append(f"math with TeX that latex2mathml leaves raw ({', '.join(unknown)}): ${tex}$")
    out = ET.tostring(root, encoding="unicode")
    return f'<span class="display-math">{out}</span>' if display else out  # scrolls when wider than the page


_NS = "{http://www.w3.org/1998/Math/MathML}"
ET.register_namespace("", _NS[1:-1])
_SCRIPTS = {_NS + t for t in ("msub", "msup", "msubsup", "munder", "mover", "munderover")}
_FUNCTIONS = {"log", "exp", "ln", "sin", "cos", "tan", "tanh", "det", "arg", "sup", "inf", "lim", "max", "min"}
_SYMBOLS = {"~": "\u223c", "\\|": "\u2016", "\\{": "{", "\\}": "}", "\\langle": "\u27e8", "\\rangle": "\u27e9"}


def tidy_mathml(root):
    "What latex2mathml gets wrong: \\sim and \\big\\| as raw text; no thin space after log; TeX's tight scripts."
    for e in root.iter():
        if e.tag in (_NS + "mi", _NS + "mo") and e.text in _SYMBOLS: e.tag, e.text = _NS + "mo", _SYMBOLS[e.text]
    for script in (e for e in root.iter() if e.tag in _SCRIPTS):
        for child in list(script)[1:]:
            for mo in child.iter(_NS + "mo"): mo.set("lspace", "0"); mo.set("rspace", "0")
    for parent in list(root.iter()):
        for i, e in reversed(list(enumerate(parent))):
            nxt = parent[i + 1] if i + 1 < len(parent) else None
            if e.tag == _NS + "mi" and e.text in _FUNCTIONS and nxt is not None and nxt.text != "(":
                parent.insert(i + 1, ET.Element(_NS + "mspace", width="0.1667em"))


def code_html(code, language="python"):
    "Highlighted code in a <pre>, with the classes of `HtmlFormatter().get_style_defs()`."
    try: lexer = get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound: lexer = TextLexer()
    inner = highlight(code, lexer, HtmlFormatter(nowrap=True))
    return f'<pre class="code highlight"><code>{inner}</code></pre>\n'


def outputs_html(outputs, page):
    "A code cell's outputs; images are written as files under the site's figures/ folder (`page.write_figure`)."
    parts, streams = [], []

    def flush():
        for name, text in streams:
            parts.append(f'<pre class="output {name}">{html.escape(_ANSI.sub("", text).rstrip())}</pre>')
        streams.clear()

    for o in outputs:
        if o.get("output_type") == "stream":
            text = "".join(o["text"])
            if streams and streams[-1][0] == o["name"]: streams[-1] = (o["name"], streams[-1][1] + text)
            else: streams.append((o["name"], text))
            continue
        flush()
        if o.get("output_type") == "error":
            parts.append(f'<pre class="output error">{html.escape(_ANSI.sub("", chr(10).join(o["traceback"])))}</pre>')
            continue
        data = o.get("data", {})
        if WIDGET in data: continue
        if "image/png" in data:
            src = page.write_figure(base64.b64decode(data["image/png"]), "png")
            parts.append(f'<img class="figure" src="{src}" alt="figure from {html.escape(page.title)}">')
        elif "image/svg+xml" in data:
            parts.append(f'<div class="output svg">{"".join(data["image/svg+xml"])}</div>')
        elif "text/html" in data:
            parts.append(f'<div class="output html">{"".join(data["text/html"])}</div>')
        elif "text/markdown" in data:
            parts.append(f'<div class="output markdown">{markdown_html("".join(data["text/markdown"]), page)}</div>')
        elif "text/latex" in data:
            tex = "".join(data["text/latex"]).strip().strip("$")
            parts.append(f'<div class="output latex">{mathml(tex, True, page)}</div>')
        elif "text/plain" in data:
            parts.append(f'<pre class="output plain">{html.escape(_ANSI.sub("", "".join(data["text/plain"])))}</pre>')
    flush()
    return "\n".join(parts)


def cell_html(cell, page, ids=()):
    "One visible cell; `ids` are anchors for the names the cell defines (the `#name` links of hindsight_ref/_modidx.py)."
    if cell.kind == "markdown": return f'<section class="cell markdown">\n{markdown_html(cell.source, page)}</section>\n'
    anchors = "".join(f'<span id="{i}" class="def-anchor"></span>' for i in ids if page.free_id(i))
    code = ""
    if cell.echo and cell.source:
        code = code_html(cell.source)
        if cell.fold:
            state = " open" if cell.directives.get("code-fold") == "show" else ""
            code = f'<details class="fold"{state}><summary>Code</summary>{code}</details>'
    out = outputs_html(cell.outputs, page) if cell.show_outputs else ""
    if not (code or out): return anchors
    return f'<div class="cell code">{anchors}{code}{f"<div class=outputs>{out}</div>" if out else ""}</div>\n'


def figure_name(stem, raw, ext):
    "A stable file name for an output image: notebook stem and a hash of the bytes."
    return f"{stem}-{hashlib.sha1(raw).hexdigest()[:10]}.{ext}"


def pygments_css():
    "The highlight colours used by `code_html`."
    return HtmlFormatter(style="friendly").get_style_defs(".highlight")
