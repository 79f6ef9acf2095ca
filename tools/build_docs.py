"""Build the documentation site from the notebooks without Quarto: one page per notebook and an API reference.

    python tools/build_docs.py [--out docs/_site] [--check]

Pages follow nbdev's Quarto site: each is titled by its notebook's first `# Title` cell and named as nbdev names
it (90_models.ipynb -> models.html); cell directives are honoured (see tools/nbmd.py); math becomes MathML at
build time (tools/nbhtml.py). The API reference (tools/apiref.py) is api.html, the modules grouped as the course
is, and one page per module (api-signal.html, ...): every name in the module's `__all__` with its signature,
docstring, parameter table, a link to its source cell on the notebook's page and the notebook's example. A search
box works offline (search-index.js, written here, and docs/assets/search.js); nothing is fetched from another
host. Problems are always printed; with --check they fail the build: a notebook without a title, code of a hidden
cell on its page, raw TeX or a math placeholder left, math that does not convert, a link or #anchor that points
nowhere (source links included), a public function, class or method without a docstring, a public callable with
3+ parameters that are not all described (PARAM_TABLES_REQUIRED).
With Quarto installed, `nbdev_docs` builds the full nbdev site from nbs/_quarto.yml instead."""
import argparse, configparser, html, json, re, shutil, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import apiref
from docpage import Page, nav_html, page_html, toc_html
from nbhtml import cell_html, code_html, markdown_html, page_name, pygments_css, slugify
from nbmd import hidden, split_directives, visible_cells
from sitecheck import check_site, pre_text

root = Path(__file__).resolve().parent.parent
cfg = configparser.ConfigParser(interpolation=None)
cfg.read(root / "settings.ini")
cfg = cfg["DEFAULT"]
EXPORT = {"export", "exports", "exporti"}
# A public callable with apiref.MIN_PARAMS or more parameters describes every one of them (a `# text` after each
# parameter, nbdev's docments, or an Args: section); --check fails on one that does not.
PARAM_TABLES_REQUIRED = True


class Site:
    "Where the site is written and what every page needs to know about the others."

    def __init__(self, out, notebooks):
        self.root, self.nbs, self.out = root, root / cfg.get("nbs_path", "nbs"), Path(out)
        self.notebooks = {f.stem for f in notebooks}
        self.git_url, self.branch = cfg.get("git_url", "").rstrip("/"), cfg.get("branch", "main")


def title_of(nb):
    "(title, subtitle, rest of the first cell) from the first Markdown cell: `# Title`, then an optional `> line`."
    first = next((c.source for c in visible_cells(nb) if c.kind == "markdown"), "")
    m = re.match(r"\s*#\s+(.+?)\s*\n(?:\s*>\s*(.+?)\s*(?:\n|$))?(.*)", first + "\n", re.S)
    return (m.group(1), m.group(2) or "", m.group(3)) if m else (None, "", first)


def number_of(stem):
    "The reading-order number in a notebook's file name (00, 35), or '' (index)."
    m = re.match(r"^(\d+[a-zA-Z0-9]*)_", stem)
    return m.group(1) if m else ""


def api_box(mods):
    "The line under a notebook's title that links the names it exports to the reference."
    parts = []
    for m in mods:
        named = [e for e in m.entries if e.kind != "data"]
        links = " · ".join(f'<a href="{m.page}#{e.qualname}"><code>{e.name}</code></a>' for e in named)
        rest = len(m.entries) - len(named)
        plural = "s" if rest != 1 else ""
        parts.append(f'<p class="api-box">This notebook builds <a href="{m.page}"><code>{m.name}</code></a>: '
                     f'{links}{f" and {rest} constant{plural}" if rest else ""}.</p>')
    return "".join(parts)


def notebook_body(nb, page, mods):
    "The page body for one notebook: title, link to its API entries, then every visible cell."
    title, subtitle, rest = title_of(nb)
    body = [f'<h1 class="title">{html.escape(page.title)}</h1>']
    if subtitle: body.append(f'<div class="subtitle">{markdown_html(subtitle, page)}</div>')
    body.append(api_box(mods))
    public = {e.name for m in mods for e in m.entries}
    cells = list(visible_cells(nb))
    first_md = next((i for i, c in enumerate(cells) if c.kind == "markdown"), None)
    for i, cell in enumerate(cells):
        if i == first_md:
            if rest.strip(): body.append(f'<section class="cell markdown">{markdown_html(rest, page)}</section>')
            continue
        ids = [n.lower() for n in apiref.defined_names(cell.source) if n in public] if EXPORT & cell.directives.keys() else []
        body.append(cell_html(cell, page, ids))
    return "\n".join(body)


def api_index_body(page, groups, pages, label):
    "api.html: the modules, grouped as the course is, each with its notebook and what it holds."
    body = ['<h1 class="title">API reference</h1>',
            "<p>One page per module: every name in its <code>__all__</code> with its signature, docstring and parameter "
            "table (what <code>show_doc</code> gives), a link to its source cell in the notebook that derives it, and "
            "that notebook's example. The search box at the top finds any name.</p>"]
    for title, mods in groups:
        page.headings.append((2, page.new_id(slugify(title)), html.escape(title)))
        rows = "".join(f'<tr><td><a href="{m.page}"><code>{m.name}</code></a></td><td><a href="{pages[m.notebook].file}">'
                       f'{html.escape(label[m.notebook])}</a></td><td>{html.escape(first_sentence(m.doc))}</td>'
                       f'<td>{counts(m)}</td></tr>' for m in mods)
        body.append(f'<h2 id="{page.headings[-1][1]}">{html.escape(title)}</h2><table class="modules"><tr><th>Module</th>'
                    f'<th>Notebook</th><th>What it holds</th><th>Names</th></tr>{rows}</table>')
    return "\n".join(body)


def first_sentence(text):
    "The first sentence of a docstring (its first line when it has no full stop followed by a space)."
    t = " ".join((text or "").split())
    return re.split(r"(?<=[.!?])\s", t, maxsplit=1)[0]


def counts(m):
    "'4 functions, 2 classes, 3 constants' for a module."
    kinds, words = [e.kind for e in m.entries], {"function": ("function", "functions"), "class": ("class", "classes"),
                                                 "data": ("constant", "constants")}
    return ", ".join(f"{n} {words[k][n != 1]}" for k in words if (n := kinds.count(k)))


def module_body(page, m, nb_page, label, code_of):
    "One module's page: its entries (helpers last, marked), then its constants."
    body = [f'<h1 class="title">{m.name}</h1>', f'<div class="subtitle">{markdown_html(m.doc, page)}</div>' if m.doc else "",
            f'<p class="built-in">Derived and tested in <a href="{nb_page.file}">{html.escape(label[m.notebook])}</a>.</p>']
    md = lambda s: markdown_html(s, page)
    named = [e for e in m.entries if e.kind != "data"]
    for helpers in (False, True):
        part = [e for e in named if m.helper(e) == helpers]
        if not part: continue
        if helpers:
            page.headings.append((2, page.new_id("helpers"), "Helpers"))
            body.append('<h2 id="helpers">Helpers</h2><p>Public because other modules, the notebook or the tests use them; '
                        'a user of the library does not need them.</p>')
        for e in part:
            for q in [e.qualname, *(x.qualname for x in e.members)]: page.free_id(q)
            page.headings.append((3, e.qualname, f"<code>{html.escape(e.name)}</code>"))
            body.append(apiref.entry_html(e, md, code_of, label[m.notebook], helper=helpers))
    data = [e for e in m.entries if e.kind == "data"]
    if data:
        page.headings.append((2, page.new_id("constants"), "Constants"))
        for e in data: page.free_id(e.qualname)
        body.append(f'<h2 id="constants">Constants</h2>{apiref.constants_html(data)}')
    return "\n".join(body)


def write_pages(site, nbs, titles, mods):
    "Write one page per notebook, api.html and one page per module; returns ({stem: Page}, [API Pages])."
    label = {s: " ".join(filter(None, [number_of(s), titles[s] or s])) for s in nbs}
    groups = apiref.course_groups(mods)
    api_nav = [(m.page, "", m.short) for _, ms in groups for m in ms]
    nav = [(f"{page_name(s)}.html", number_of(s), titles[s] or s) for s in nbs] + [("api.html", "", "API reference")]
    site_title = cfg.get("title", cfg["lib_name"])
    pages = {}
    for stem, nb in nbs.items():
        page = pages[stem] = Page(stem, titles[stem] or stem, site)
        body = notebook_body(nb, page, [m for m in mods if m.notebook == stem])
        source = f'Built from <a href="{site.git_url}/blob/{site.branch}/nbs/{stem}.ipynb">nbs/{stem}.ipynb</a>.'
        (site.out / page.file).write_text(page_html(page.title, site_title, body, nav_html(nav, page.file),
                                                    toc_html(page.headings), source))
    api = [Page("api", "API reference", site)]
    body = api_index_body(api[0], groups, pages, label)
    (site.out / "api.html").write_text(page_html(api[0].title, site_title, body, nav_html(nav, "api.html", api_nav),
                                                 toc_html(api[0].headings, (2,)), "Built from the package's modules by tools/apiref.py."))
    for _, ms in groups:
        for m in ms:
            page = Page(m.page[:-5], m.name, site, file=m.page)
            examples = apiref.examples(nbs[m.notebook])
            for e in m.entries:
                e.example = examples.get(e.name)
                for x in e.members: x.source = x.source or e.source
            body = module_body(page, m, pages[m.notebook], label, code_html)
            source = (f'Built from <a href="{site.git_url}/blob/{site.branch}/{m.name.replace(".", "/")}.py">'
                      f'{m.name.replace(".", "/")}.py</a> (edit <a href="{pages[m.notebook].file}">nbs/{m.notebook}.ipynb</a>) by tools/apiref.py.')
            (site.out / m.page).write_text(page_html(m.name, site_title, body, nav_html(nav, m.page, api_nav),
                                                     toc_html(page.headings), source))
            api.append(page)
    assets = root / "docs" / "assets"
    (site.out / "site.css").write_text((assets / "site.css").read_text() + "\n" + pygments_css() + "\n")
    for f in ("colab-badge.svg", "search.js"): shutil.copy(assets / f, site.out / f)
    (site.out / "search-index.js").write_text("window.SEARCH_INDEX = " + json.dumps(search_index(pages, api, mods), ensure_ascii=False,
                                                                                   separators=(",", ":")) + ";\n")
    return pages, api


def search_index(pages, api, mods):
    "[title, url, kind, context] for every page, every heading of a notebook page and every API name."
    plain = lambda s: html.unescape(re.sub(r"<[^>]+>", "", s)).strip()
    out = [[p.title, p.file, "page", ""] for p in [*pages.values(), *api]]
    out += [[plain(t), f"{p.file}#{i}", "section", p.title] for p in pages.values() for lvl, i, t in p.headings if lvl in (2, 3)]
    for m in mods:
        for top in m.entries:
            for e in [top, *top.members]:
                name = e.qualname[len(m.name) + 1:]
                out.append([name, f"{m.page}#{e.qualname}", "constant" if e.kind == "data" else e.kind,
                            f"{m.short}: {first_sentence(e.doc)}" if e.doc else m.short])
    return out


def source_links(mods, pages, api):
    "Problems: an entry's source link (from _modidx.py) that names no page of the site or no anchor on it."
    by_file, problems = {p.file: p for p in [*pages.values(), *api]}, []
    for m in mods:
        for e in m.entries:
            if e.kind == "data": continue
            f, _, anchor = (e.source or "").partition("#")
            if not e.source: problems.append(f"{m.page}: {e.qualname} has no source link (is it in hindsight_ref/_modidx.py? run nbdev_export)")
            elif f not in by_file or (anchor and anchor not in by_file[f].ids):
                problems.append(f"{m.page}: the source link of {e.qualname} points to {e.source}, which does not exist")
    return problems


def hidden_code_shown(nbs, pages, out):
    "Problems: code of a `#| hide`, `#| include: false` or `#| echo: false` cell that made it onto its page."
    problems = []
    for stem, nb in nbs.items():
        shown = pre_text(out / pages[stem].file)
        for c in nb["cells"]:
            d, code = split_directives("".join(c["source"])) if c["cell_type"] == "code" else ({}, "")
            if code and (hidden(d) or d.get("echo") == "false") and code in shown:
                problems.append(f"{pages[stem].file}: code of a cell marked hidden or echo: false is shown: {code[:60]!r}")
    return problems


def build(out):
    "Write the site into `out`; returns (problems, figures)."
    files = sorted((root / cfg.get("nbs_path", "nbs")).glob("*.ipynb"), key=lambda f: (f.stem != "index", f.stem))
    site, problems = Site(out, files), []
    site.out.mkdir(parents=True, exist_ok=True)
    for old in [*site.out.glob("*.html"), *site.out.glob("figures/*")]: old.unlink()  # only what a build writes
    nbs = {f.stem: json.loads(f.read_text()) for f in files}
    titles = {stem: title_of(nb)[0] for stem, nb in nbs.items()}
    problems += [f"{s}.ipynb: the first Markdown cell must start with '# Title'" for s, t in titles.items() if not t]
    names = [page_name(s) for s in nbs] + ["api"]
    problems += [f"{s}.ipynb: its page {page_name(s)}.html is also another page's" for s in nbs if names.count(page_name(s)) > 1]
    mods = apiref.modules(root, cfg["lib_path"])
    problems += [f"{m.name}: its header names no notebook in nbs/ ({m.notebook})" for m in mods if m.notebook not in nbs]
    mods = sorted((m for m in mods if m.notebook in nbs), key=lambda m: list(nbs).index(m.notebook))

    pages, api = write_pages(site, nbs, titles, mods)
    for p in [*pages.values(), *api]: problems += [f"{p.file}: {x}" for x in p.problems]
    problems += apiref.undocumented(mods) + hidden_code_shown(nbs, pages, site.out) + source_links(mods, pages, api)
    unlisted = [m.name for m in mods if m.short not in {s for _, ss in apiref.COURSE for s in ss}]
    if unlisted: print(f"docs: modules not in the course table (tools/apiref.py COURSE), listed under 'Other modules': {unlisted}")
    params = apiref.missing_param_tables(mods)
    if PARAM_TABLES_REQUIRED: problems += params
    site_problems, figures = check_site(site.out, {p.file: p.title for p in [*pages.values(), *api]})
    figures.update(api_pages=len(api), api_entries=sum(1 + len(e.members) for m in mods for e in m.entries), modules=len(mods),
                   images=len(list(site.out.glob("figures/*"))), callables_missing_parameter_texts=len(params))
    return problems + site_problems, figures, params


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(root / "docs" / "_site"), help="folder to write the site into (emptied first)")
    p.add_argument("--check", action="store_true", help="exit 1 when the build finds a problem")
    args = p.parse_args()
    problems, figures, params = build(args.out)
    print(f"docs: site written to {args.out}: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in figures.items()))
    if params and not PARAM_TABLES_REQUIRED:
        print(f"docs: {len(params)} public callables with {apiref.MIN_PARAMS}+ parameters lack a parameter table (not all "
              f"parameters described; reported, not yet a failure: PARAM_TABLES_REQUIRED in tools/build_docs.py):\n  " + "\n  ".join(params))
    if problems:
        note = "" if args.check else "; --check (and so make test) fails on them"
        print(f"docs problems ({len(problems)}{note}):\n  " + "\n  ".join(problems))
        if args.check: sys.exit(1)
