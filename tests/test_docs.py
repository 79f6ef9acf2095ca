"""The docs site (tools/build_docs.py) as a reader meets it.

Without a browser: cell directives, math, the API reference's pieces (parameter lists, examples, the course
grouping, source links) and the static site checks on small synthetic notebooks and pages. In a browser: every
built page opened in headless Chromium, served over http://127.0.0.1, for its title, console errors, images,
rendered math, math placeholders, width and internal links (pages and #anchors, the API's source links among them),
the search box, plus a screenshot of the landing page; and a deliberately broken site to show each of those checks
fails. The browser tests need Chromium and chromedriver
(Debian: chromium, chromium-driver; `make docs-check` installs them) and skip with a message when they are missing.
DOCS_SITE=path tests a site already built instead of building one."""
import functools, html, http.server, importlib, json, os, re, subprocess, sys, threading, urllib.request, warnings
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urldefrag, urlsplit
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import apiref  # noqa: E402
from docpage import Page  # noqa: E402
from nbhtml import cell_html, markdown_html  # noqa: E402
from nbmd import visible_cells  # noqa: E402
from sitecheck import PLACEHOLDER, RAW_TEX, check_site, pre_text  # noqa: E402
import build_docs  # noqa: E402

CHROMIUM = os.environ.get("DOCS_CHROMIUM", "/usr/bin/chromium")
DRIVER = os.environ.get("DOCS_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--window-size=1280,900",
         "--disable-dev-shm-usage"]  # containers often give /dev/shm 64 MB, too little for Chromium


def page_for(tmp_path, title="T"):
    "A page of a one-notebook site in tmp_path, to render cells into."
    site = SimpleNamespace(root=ROOT, nbs=ROOT / "nbs", out=tmp_path, notebooks={"00_a"}, git_url="https://x", branch="main")
    return Page("00_a", title, site)


def code(src, outputs=()):
    return {"cell_type": "code", "source": src, "outputs": list(outputs), "metadata": {}}


def stdout(text): return {"output_type": "stream", "name": "stdout", "text": text}


def render(cells, page):
    return "".join(cell_html(c, page) for c in visible_cells({"cells": cells}))


def test_directives_hide_fold_and_never_show(tmp_path):
    page = page_for(tmp_path)
    cells = [code("#| hide\nsecret_a = 1", [stdout("hidden out\n")]),
             code("#| include: false\nsecret_b = 2"),
             code("#| echo: false\nfigure_code()", [stdout("shown output\n")]),
             code("#| code-fold: true\nfolded_code()", [stdout("folded output\n")]),
             code("#| output: false\nquiet()", [stdout("no such output\n")]),
             code("#|export\nplain_code()")]
    out = render(cells, page)
    pre = "".join(re.findall(r"<pre.*?</pre>", out, re.S))
    for gone in ["secret_a", "hidden out", "secret_b", "figure_code", "no such output", "#|"]: assert gone not in out
    assert "shown output" in out and "folded output" in out and "quiet" in out and "plain_code" in pre
    fold = re.search(r"<details class=\"fold\">(.*?)</details>", out, re.S)
    assert fold and "folded_code" in fold.group(1) and "folded output" not in fold.group(1)  # closed, output outside


def test_math_rendered_and_code_untouched(tmp_path):
    page = page_for(tmp_path)
    md = ("Inline $A_i < 0$ and a line-wrapped $\\log \\pi(y \\mid\nx)$; a span `$not math$`; "
          "costs $5 and $6; a literal \\$.\n\n$$\\sum_i A_i \\big\\| b$$\n\n```python\nx = '$y$'\n```")
    out = markdown_html(md, page)
    assert out.count("<math") == 3 and out.count('display="block"') == 1 and not page.problems
    plain = html.unescape(re.sub(r"<[^>]+>", "", out))
    assert "<code>$not math$</code>" in out and "x = '$y$'" in plain
    assert "costs $5 and $6" in out and "a literal $." in out and "\\|" not in out  # \big\| converted to U+2016
    bad = markdown_html("$\\notacommand x$", page)
    assert page.problems and "notacommand" in page.problems[0] and "<math" in bad


def test_notebook_links_become_pages(tmp_path):
    page = page_for(tmp_path)
    out = markdown_html("[a](00_a.ipynb#sec) [b](99_missing.ipynb) [c](https://e.org/x.ipynb)", page)
    assert 'href="a.html#sec"' in out and 'href="https://e.org/x.ipynb"' in out
    assert page.problems == ["link to missing notebook 99_missing.ipynb"]


def test_site_check_finds_each_problem(tmp_path):
    (tmp_path / "ok.html").write_text('<title>Ok – s</title><h1>Ok</h1><p id="here">price in <code>$x$</code></p>'
                                      '<a href="bad.html#here">x</a>')
    (tmp_path / "bad.html").write_text('<title>Wrong</title><h1>Bad</h1><p id="here">raw $$ and $\\pi$ and \x02M0\x03</p>'
                                       '<pre>#| hide</pre><img src="https://e.org/a.png"><img src="gone.png">'
                                       '<a href="ok.html#nowhere">a</a><a href="missing.html">b</a><a href="#here">c</a>')
    problems, figures = check_site(tmp_path, {"ok.html": "Ok", "bad.html": "Bad"})
    text = "\n".join(problems)
    assert not [p for p in problems if p.startswith("ok.html: raw")]  # $ in <code> is code, not math
    assert "<title> is 'Wrong'" in text and text.count("raw TeX") == 2 and "`#|` directive" in text
    assert "another host" in text and "missing file gone.png" in text and "math placeholder" in text
    assert "missing anchor ok.html#nowhere" in text and "missing page missing.html" in text
    assert ("ok.html: raw" not in text) and len(problems) == 9 and figures == {"pages": 2, "internal links": 4}
    assert pre_text(tmp_path / "bad.html") == "#| hide"


def test_api_docstrings_and_signatures():
    class Base:
        "Documented base."
        def stop(self):
            "Stop."
    class Child(Base):  # inherits a docstring but has none of its own
        def run(self, n: int = 3):
            "Run n times."
        def stop(self): pass  # an override: the base's docstring documents it
        def go(self): pass
    from dataclasses import dataclass
    @dataclass
    class Point:
        x: int
    assert apiref.own_doc(Child) is None and apiref.own_doc(Point) is None and apiref.own_doc(Base) == "Documented base."
    assert [(m.name, m.doc) for m in apiref.members(Child, "m.Child")] == [("run", "Run n times."), ("stop", "Stop."), ("go", None)]
    mod = apiref.Module("m", "00_a", "", [apiref.Entry("m.Child", "class", "Child()", None, members=apiref.members(Child, "m.Child"))])
    assert apiref.undocumented([mod]) == ["00_a.ipynb: m.Child (class) has no docstring", "00_a.ipynb: m.Child.go (method) has no docstring"]
    assert apiref.signature(Child.run, "run", method=True) == "run(n: int = 3)"
    def f(x: "torch.Tensor", k: "int" = 2) -> "dict": pass  # noqa: F821 (annotations as `from __future__ import annotations` leaves them)
    assert apiref.signature(f, "f") == "f(x: torch.Tensor, k: int = 2) -> dict" and apiref.signature(Point, "Point") == "Point(x: int)"
    assert apiref.defined_names("def f(): pass\nclass C: pass\nX = 1\n_p = 2\ny: int = 3") == ["f", "C", "X", "y"]


def test_math_in_a_heading_reaches_the_contents_list(tmp_path):
    page = page_for(tmp_path)
    markdown_html("## Top-$k$ with a tail\n\ntext", page)
    (lvl, ident, text), = page.headings
    assert ident == "top-k-with-a-tail" and "<math" in text and not PLACEHOLDER.search(text)


def test_api_parameter_lists_examples_groups_and_source_links(tmp_path):
    body, params = apiref.docstring_params("Score.\n\nArgs:\n    model: the policy\n    top_k (int): keep k\n        and the tail\n\nMore.")
    assert body == "Score.\n\nMore." and params == {"model": "the policy", "top_k": "keep k and the tail"}
    assert apiref.docstring_params("Score.\n\nParameters\n----------\nk : int\n    top k\n") == ("Score.", {"k": "top k"})

    def f(a,          # the first, in nbdev's docments style
          b: int = 2, c=None):
        """F.

        Args:
            b: the second, from the docstring"""
    e = apiref.Entry("m.f", "function", "f(a, b, c)", apiref.own_doc(f), apiref.param_table(f, apiref.own_doc(f)))
    assert {k: v["docment"] for k, v in e.params.items()} == {"a": "the first, in nbdev's docments style", "b": "the second, from the docstring", "c": None}
    assert e.missing_params == ["c"] and apiref.missing_param_tables([apiref.Module("m", "00_a", "", [e])]) == \
        ["00_a.ipynb: m.f (function): 1 of 3 parameters undescribed (c)"]
    e.params.pop("c")
    assert e.missing_params == []                                     # fewer than 3 parameters: no table required
    def g(x,      # the context x
          *ys,    # the completions y
          **kw):  # passed on
        "G."
    assert {k: v["docment"] for k, v in apiref.param_table(g).items()} == {"x": "the context x", "ys": "the completions y", "kw": "passed on"}
    import argparse
    class Parser(argparse.ArgumentParser): "A parser; its constructor is argparse's."
    assert not apiref.builds_itself(Parser) and apiref.builds_itself(apiref.Entry)

    md = {"cell_type": "markdown", "source": "By hand first: g() is 1.", "metadata": {}}
    nb = {"cells": [code("#| export\ndef g(): pass\nY = 1\nZ = 2"), md, code("g()\nassert Y == 1"), code("#| hide\nZ"), code("Z + 1"),
                    code("#| export\ndef h(): pass"), code("#| hide\nh()"), code("#| export\ndef k(): pass"), code("other()")]}
    assert apiref.examples(nb) == {"g": "g()\nassert Y == 1", "Y": "g()\nassert Y == 1", "Z": "Z + 1"}

    mods = [apiref.Module(f"hindsight_ref.{n}", "00_a", "", []) for n in ("probe", "signal", "models", "elsewhere")]
    parts = {t: shorts for t, shorts in apiref.COURSE}
    assert [(t, [m.short for m in ms]) for t, ms in apiref.course_groups(mods)] == \
        [(t, [s for s in parts[t] if s in ("signal", "probe", "models")]) for t in parts if {"signal", "probe", "models"} & set(parts[t])] \
        + [("Other modules", ["elsewhere"])]
    assert [t for t, _ in apiref.course_groups(mods)][:2] == ["Part I, the signal", "Appendices, the engineering"]
    assert mods[1].page == "api-signal.html"

    page = page_for(tmp_path); page.ids.add("g")
    ents = [apiref.Entry(f"hindsight_ref.signal.{n}", "function", "", "d", source=src)
            for n, src in [("g", "a.html#g"), ("gone", "a.html#gone"), ("nowhere", "b.html#g"), ("unlinked", None)]]
    problems = build_docs.source_links([apiref.Module("hindsight_ref.signal", "00_a", "", ents)], {"00_a": page}, [])
    assert [p.split(" ", 2)[1] for p in problems] == ["the", "the", "hindsight_ref.signal.unlinked"] and len(problems) == 3
    assert "a.html#gone, which does not exist" in problems[0] and "b.html#g" in problems[1]


def test_the_course_table_names_the_package_modules():
    shorts = {m.short for m in apiref.modules(ROOT, "hindsight_ref")}
    named = [s for _, ss in apiref.COURSE for s in ss]
    assert len(named) == len(set(named)) and set(named) <= shorts, sorted(set(named) - shorts)
    assert {h.rsplit(".", 1)[0] for h in apiref.HELPERS} <= shorts
    gone = [h for h in apiref.HELPERS if h.rsplit(".", 1)[1] not in importlib.import_module("hindsight_ref." + h.rsplit(".", 1)[0]).__all__]
    assert not gone, f"HELPERS names that are no longer public (remove them from tools/apiref.py): {gone}"


def test_every_public_callable_describes_its_parameters():
    "Every public function, class and method with 3+ parameters describes each one, and the docs check requires it."
    missing = apiref.missing_param_tables(apiref.modules(ROOT, "hindsight_ref"))
    assert not missing, f"{len(missing)} public callables with undescribed parameters (a `# text` after each parameter, " \
        f"nbdev's docments, or an Args: section):\n  " + "\n  ".join(missing)
    assert build_docs.PARAM_TABLES_REQUIRED


def test_every_module_is_documented_from_its_notebook():
    mods = apiref.modules(ROOT, "hindsight_ref")
    assert mods and all((ROOT / "nbs" / f"{m.notebook}.ipynb").exists() for m in mods)
    for m in mods:  # every name in __all__ has an entry, in that order
        assert [e.name for e in m.entries] == list(importlib.import_module(m.name).__all__)


# --- in a browser ---------------------------------------------------------------------------------------------

# Visible text without code and math, every image, every math element's size, every id and link, the page width.
PAGE_JS = """
const body = document.body.cloneNode(true);
body.querySelectorAll('pre, code, math, script, style').forEach(e => e.remove());
return {
  h1: (document.querySelector('h1') || {}).textContent || null,
  text: body.textContent,
  images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]),
  math: Array.from(document.querySelectorAll('math')).map(m => { const r = m.getBoundingClientRect(); return [r.width, r.height]; }),
  ids: Array.from(document.querySelectorAll('[id], a[name]')).map(e => e.id || e.name),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
  placeholder: /[\u0002\u0003]/.test(document.documentElement.innerHTML),
  sources: document.querySelectorAll('a.source').length,
  undescribed: document.querySelectorAll('[data-undescribed]').length,
};
"""


def skip_reason():
    "Why the browser tests cannot run here, or None."
    if not os.access(CHROMIUM, os.X_OK): return f"docs browser test skipped: no Chromium at {CHROMIUM}; run `make docs-check`"
    if not os.access(DRIVER, os.X_OK): return f"docs browser test skipped: no chromedriver at {DRIVER}; run `make docs-check`"
    try: import selenium  # noqa: F401
    except ImportError: return "docs browser test skipped: selenium is not installed (pip install -e '.[dev]'); run `make docs-check`"
    return None


def expected_titles():
    "Page file -> title: from each notebook's first Markdown cell (`# Title`), as nbdev names the pages; the module name."
    out = {"api.html": "API reference", **{m.page: m.name for m in apiref.modules(ROOT, "hindsight_ref")}}
    for f in (ROOT / "nbs").glob("*.ipynb"):
        md = next(("".join(c["source"]) for c in json.loads(f.read_text())["cells"] if c["cell_type"] == "markdown"), "")
        m = re.match(r"\s*#\s+(.+)", md)
        out[re.sub(r"^\d+[a-zA-Z0-9]*_", "", f.stem.lower()) + ".html"] = m.group(1).strip() if m else None
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    "Headless Chromium driven by selenium through Debian's chromedriver, with a fresh profile."
    reason = skip_reason()
    if reason:
        warnings.warn(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]: opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def serve(folder):
    "A server for `folder` on http://127.0.0.1 from a thread (file:// would hide broken links); returns (httpd, base)."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def status(url):
    "HTTP status of a GET to the local server."
    try:
        with urllib.request.urlopen(url, timeout=10) as r: return r.status
    except urllib.error.HTTPError as e: return e.code


def browse(driver, folder, titles, shot=None):
    "Open every page of the site in `folder`; returns (problems, figures). `shot`: screenshot index.html there."
    httpd, base = serve(folder)
    try:
        problems, seen, links, fig = [], {}, set(), dict(pages=0, images=0, math=0, links=0, sources=0, undescribed=0)
        for name in sorted(p.name for p in Path(folder).glob("*.html")):
            driver.get(base + name)
            info = driver.execute_script(PAGE_JS)
            want = titles.get(name)
            if want is None: problems.append(f"{name}: no notebook gives this page a title")
            elif not driver.title.startswith(want) or (info["h1"] or "").strip() != want:
                problems.append(f"{name}: title {driver.title!r} / heading {info['h1']!r}, expected {want!r}")
            problems += [f"{name}: console {e['level']}: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            problems += [f"{name}: image not loaded: {src}" for src, done, w in info["images"] if not (done and w > 0)]
            problems += [f"{name}: raw TeX shown: {m.group(0)!r}" for m in RAW_TEX.finditer(info["text"])]
            problems += [f"{name}: a <math> element has no size (MathML not rendered)" for w, h in info["math"] if not (w > 0 and h > 0)][:1]
            if info["overflow"] > 0: problems.append(f"{name}: the page is {info['overflow']}px wider than the window")
            if info["placeholder"]: problems.append(f"{name}: a math placeholder (\\x02M..\\x03) is left in the page")
            if info["undescribed"]: problems.append(f"{name}: {info['undescribed']} API entries lack a full parameter table")
            fig.update(pages=fig["pages"] + 1, images=fig["images"] + len(info["images"]), math=fig["math"] + len(info["math"]),
                       sources=fig["sources"] + info["sources"], undescribed=fig["undescribed"] + info["undescribed"])
            seen[name] = set(info["ids"])
            links |= {(name, href) for href in info["links"] if href.startswith(base)}
            if name == "index.html" and shot: screenshot(driver, shot)
        for name, href in sorted(links):
            url, frag = urldefrag(href)
            target = urlsplit(url).path.lstrip("/") or "index.html"
            if target in seen:
                if frag and frag not in seen[target]: problems.append(f"{name}: link to missing anchor {href[len(base):]}")
            elif status(url) != 200: problems.append(f"{name}: link to missing {href[len(base):]}")
        fig["links"] = len(links)
        return problems, fig
    finally:
        httpd.shutdown(); httpd.server_close()


def screenshot(driver, path):
    "The whole page as a PNG at `path`, 1280 pixels wide."
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(height, 8000))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The built site: DOCS_SITE when set, else a fresh build."
    if os.environ.get("DOCS_SITE"): return Path(os.environ["DOCS_SITE"]).resolve()
    out = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, str(ROOT / "tools" / "build_docs.py"), "--out", str(out)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return out


def test_docs_in_browser(browser, site):
    titles = expected_titles()
    missing = sorted(set(titles) - {p.name for p in site.glob("*.html")})
    assert not missing, f"notebooks or modules without a page: {missing}"
    shot = site / "_screenshots" / "index.png"
    problems, fig = browse(browser, site, titles, shot)
    n_api = len([t for t in titles if t.startswith("api-")])
    print(f"\ndocs browser test: {fig['pages']} pages ({n_api} module pages of the API), {fig['images']} images loaded, "
          f"{fig['math']} math elements rendered, {fig['links']} internal links checked ({fig['sources']} source links of "
          f"API entries among them); {fig['undescribed']} API entries lack a full parameter table; landing page "
          f"screenshot: {shot}")
    assert fig["sources"] > 200 and fig["pages"] == len(titles)
    assert not problems, f"{len(problems)} problems in the docs site:\n  " + "\n  ".join(problems)


def search(driver, url, query):
    "Type `query` into the search box of the page at `url`; returns [(text, href)] of the results shown."
    from selenium.webdriver.common.by import By
    driver.get(url)
    box = driver.find_element(By.ID, "search")
    assert box.is_displayed(), "the search box is hidden (search.js or search-index.js did not load)"
    box.clear(); box.send_keys(query)
    return [(a.text, a.get_attribute("href")) for a in driver.find_elements(By.CSS_SELECTOR, "#search-results a")]


def test_search_box_works_offline(browser, site):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    httpd, base = serve(site)
    try:
        hits = search(browser, base + "losses.html", "hindsight_signal")
        assert hits and hits[0][1] == base + "api-signal.html#hindsight_ref.signal.hindsight_signal", hits[:3]
        browser.find_element(By.ID, "search").send_keys(Keys.ENTER)
        assert browser.current_url.endswith("api-signal.html#hindsight_ref.signal.hindsight_signal")
        assert browser.find_element(By.ID, "hindsight_ref.signal.hindsight_signal").is_displayed()
        assert any(h.endswith("toyworld.html") for _, h in search(browser, base + "index.html", "toy world experiments"))
        assert search(browser, base + "index.html", "zzqx nothing like this") == []
        assert browser.find_element(By.CSS_SELECTOR, "#search-results .none").text == "nothing found"
    finally:
        httpd.shutdown(); httpd.server_close()
    hits = search(browser, (site / "api.html").as_uri(), "TrainConfig")   # opened as a file, no server: still works
    assert hits and hits[0][1].endswith("api-train.html#hindsight_ref.train.TrainConfig")


def test_browser_checks_fail_on_a_broken_site(browser, tmp_path):
    (tmp_path / "index.html").write_text(
        '<!doctype html><title>Wrong</title><link rel="icon" href="data:,"><h1>Home</h1><p id="top">raw $$x$$</p>'
        '<img src="gone.png"><a href="missing.html">a</a><a href="b.html#nowhere">b</a><a href="b.html#here">c</a>'
        '<math><mi>x</mi></math><div style="width:3000px">wide</div><script>throw new Error("boom")</script><p>\x02M0\x03</p>'
        '<div class="api-entry function" data-undescribed="2"><a class="source" href="b.html#gone">source</a></div>')
    (tmp_path / "b.html").write_text('<!doctype html><title>B</title><link rel="icon" href="data:,"><h1 id="here">B</h1>')
    problems, fig = browse(browser, tmp_path, {"index.html": "Home", "b.html": "B"})
    text = "\n".join(problems)
    for expected in ["index.html: title 'Wrong'", "boom", "image not loaded: gone.png", "raw TeX shown: '$$'",
                     "link to missing missing.html", "link to missing anchor b.html#nowhere", "px wider than the window",
                     "index.html: a math placeholder", "index.html: 1 API entries lack a full parameter table",
                     "link to missing anchor b.html#gone"]:
        assert expected in text, f"{expected!r} not found in:\n{text}"
    assert not [p for p in problems if p.startswith("b.html")] and fig["math"] == 1 and fig["links"] == 4
    assert fig["sources"] == 1 and fig["undescribed"] == 1
