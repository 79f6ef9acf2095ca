"""Build the documentation site from the notebooks without Quarto: one page per notebook and an API reference.

    python tools/build_docs.py [--out docs/_site] [--check]

Pages follow nbdev's Quarto site: each is titled by its notebook's first `# Title` cell and named as nbdev names
it (00_models.ipynb -> models.html); cell directives are honoured (see tools/nbmd.py); math becomes MathML at
build time (tools/nbhtml.py); api.html documents every name in each module's `__all__` (tools/apiref.py). The
site has no script and fetches nothing from another host. Problems are always printed; with --check they fail
the build: a notebook without a title, code of a hidden cell on its page, raw TeX left, math that does not
convert, a link or #anchor that points nowhere, a public function, class or method without a docstring.
With Quarto installed, `nbdev_docs` builds the full nbdev site from nbs/_quarto.yml instead."""
import argparse, configparser, html, json, re, shutil, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
import apiref
from docpage import Page, nav_html, page_html, toc_html
from nbhtml import cell_html, markdown_html, page_name, pygments_css
from nbmd import hidden, split_directives, visible_cells
from sitecheck import check_site, pre_text

root = Path(__file__).resolve().parent.parent
cfg = configparser.ConfigParser(interpolation=None)
cfg.read(root / "settings.ini")
cfg = cfg["DEFAULT"]
EXPORT = {"export", "exports", "exporti"}


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
    "The reading-order number in a notebook's file name (00, 08a), or '' (index)."
    m = re.match(r"^(\d+[a-zA-Z0-9]*)_", stem)
    return m.group(1) if m else ""


def api_box(mods):
    "The line under a notebook's title that links the names it exports to the reference."
    parts = []
    for m in mods:
        named = [e for e in m.entries if e.kind != "data"]
        links = " · ".join(f'<a href="api.html#{e.qualname}"><code>{e.name}</code></a>' for e in named)
        rest = len(m.entries) - len(named)
        plural = "s" if rest != 1 else ""
        parts.append(f'<p class="api-box">This notebook builds <a href="api.html#{m.name}"><code>{m.name}</code></a>: '
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


def api_body(page, mods, pages, label):
    "The reference page: one section per module, in the reading order of the notebooks that build them."
    body = ['<h1 class="title">API reference</h1>',
            "<p>Every name in each module's <code>__all__</code>: signature and docstring, as <code>show_doc</code> "
            "gives them, and the notebook that derives it. Modules:</p><ul>"]
    body += [f'<li><a href="#{m.name}"><code>{m.name}</code></a> ({html.escape(label[m.notebook])})</li>' for m in mods]
    body.append("</ul>")
    for m in mods:
        nb_page = pages[m.notebook]
        page.free_id(m.name); page.headings.append((2, m.name, m.name))
        body.append(f'<h2 id="{m.name}"><code>{m.name}</code></h2>'
                    f'<p class="built-in">Built in <a href="{nb_page.file}">{html.escape(label[m.notebook])}</a>.</p>'
                    + (markdown_html(m.doc, page) if m.doc else ""))
        for e in m.entries:
            anchor = e.name.lower()
            href = f"{nb_page.file}#{anchor}" if anchor in nb_page.ids else nb_page.file
            for q in [e.qualname, *(x.qualname for x in e.members)]: page.free_id(q)
            body.append(apiref.entry_html(e, lambda s: markdown_html(s, page), href, label[m.notebook]))
    return "\n".join(body)


def write_pages(site, nbs, titles, mods):
    "Write one page per notebook and api.html; returns ({stem: Page}, the API Page)."
    label = {s: " ".join(filter(None, [number_of(s), titles[s] or s])) for s in nbs}
    nav = [(f"{page_name(s)}.html", number_of(s), titles[s] or s) for s in nbs] + [("api.html", "", "API reference")]
    site_title = cfg.get("title", cfg["lib_name"])
    pages = {}
    for stem, nb in nbs.items():
        page = pages[stem] = Page(stem, titles[stem] or stem, site)
        body = notebook_body(nb, page, [m for m in mods if m.notebook == stem])
        source = f'Built from <a href="{site.git_url}/blob/{site.branch}/nbs/{stem}.ipynb">nbs/{stem}.ipynb</a>.'
        (site.out / page.file).write_text(page_html(page.title, site_title, body, nav_html(nav, page.file),
                                                    toc_html(page.headings), source))
    api = Page("api", "API reference", site)
    body = api_body(api, mods, pages, label)
    (site.out / api.file).write_text(page_html(api.title, site_title, body, nav_html(nav, api.file),
                                               toc_html(api.headings, (2,)), "Built from the package's modules by tools/apiref.py."))
    assets = root / "docs" / "assets"
    (site.out / "site.css").write_text((assets / "site.css").read_text() + "\n" + pygments_css() + "\n")
    shutil.copy(assets / "colab-badge.svg", site.out / "colab-badge.svg")
    return pages, api


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
    for p in [*pages.values(), api]: problems += [f"{p.file}: {x}" for x in p.problems]
    problems += apiref.undocumented(mods) + hidden_code_shown(nbs, pages, site.out)
    site_problems, figures = check_site(site.out, {p.file: p.title for p in [*pages.values(), api]})
    figures.update(api_entries=sum(1 + len(e.members) for m in mods for e in m.entries), modules=len(mods),
                   images=len(list(site.out.glob("figures/*"))))
    return problems + site_problems, figures


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(root / "docs" / "_site"), help="folder to write the site into (emptied first)")
    p.add_argument("--check", action="store_true", help="exit 1 when the build finds a problem")
    args = p.parse_args()
    problems, figures = build(args.out)
    print(f"docs: site written to {args.out}: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in figures.items()))
    if problems:
        note = "" if args.check else "; --check (and so make test) fails on them"
        print(f"docs problems ({len(problems)}{note}):\n  " + "\n  ".join(problems))
        if args.check: sys.exit(1)
