"""One page of the docs site: its ids, links and figures as it is rendered, and the HTML around its body."""
import html, re
from pathlib import Path
from nbhtml import figure_name, page_name

EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|//)", re.I)


class Page:
    "A page being rendered; cells call back into it for anchors, links and figures, and report problems to it."

    def __init__(self, stem, title, site, file=None):
        self.stem, self.title, self.site = stem, title, site
        self.file = file or (f"{page_name(stem)}.html" if stem != "api" else "api.html")
        self.ids, self.headings, self.problems = set(), [], []

    def new_id(self, slug):
        "A unique id from a heading's slug (Pandoc adds -1, -2, ... to repeats)."
        ident, n = slug, 0
        while ident in self.ids: n += 1; ident = f"{slug}-{n}"
        self.ids.add(ident)
        return ident

    def free_id(self, ident):
        "Claim `ident` when no heading or anchor has it yet."
        if ident in self.ids: return False
        self.ids.add(ident)
        return True

    def rewrite_link(self, url):
        "Links to notebooks become links to their pages; links to repository files go to the repository."
        if EXTERNAL.match(url) or url.startswith("#"): return url
        path, _, frag = url.partition("#")
        frag = f"#{frag}" if frag else ""
        if path.endswith(".ipynb"):
            stem = Path(path).stem
            if stem not in self.site.notebooks: self.problems.append(f"link to missing notebook {path}")
            return f"{page_name(stem)}.html{frag}"
        target = (self.site.nbs / path).resolve()
        if target.exists() and self.site.root in target.parents:
            return f"{self.site.git_url}/blob/{self.site.branch}/{target.relative_to(self.site.root)}{frag}"
        self.problems.append(f"link to {url}, which is neither a notebook nor a file of the repository")
        return url

    def write_figure(self, raw, ext):
        "Write an output image into the site's figures/ folder; returns its path relative to the page."
        name = figure_name(self.stem, raw, ext)
        (self.site.out / "figures").mkdir(parents=True, exist_ok=True)
        (self.site.out / "figures" / name).write_bytes(raw)
        return f"figures/{name}"


def nav_html(entries, current, api_pages=()):
    "The reading-order sidebar: (file, number, title) per page, the current one marked; on API pages, the module pages."
    def item(f, n, t, inner=""):
        return (f'<li{" class=current" if f == current else ""}><a href="{f}">'
                f'{f"<span class=num>{n}</span> " if n else ""}{html.escape(t)}</a>{inner}</li>')
    sub = f'<ol class="api-pages">{"".join(item(*e) for e in api_pages)}</ol>' if api_pages else ""
    items = "".join(item(*e, sub if e[0] == "api.html" else "") for e in entries)
    return f'<nav class="sidebar" aria-label="pages in reading order"><ol>{items}</ol></nav>'


def toc_html(headings, levels=(2, 3)):
    "The 'on this page' list from the page's headings."
    items = "".join(f'<li class="toc-h{lvl}"><a href="#{i}">{re.sub(r"<a class=.anchor.*?</a>", "", text)}</a></li>'
                    for lvl, i, text in headings if lvl in levels)
    return f'<aside class="toc"><p>On this page</p><ul>{items}</ul></aside>' if items else ""


def page_html(title, site_title, body, nav, toc, source):
    "A complete page; nothing fetched from another host, so it reads the same offline (the search box is a local script)."
    full = title if title == site_title else f"{title} – {site_title}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(full)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="site.css">
<script src="search-index.js" defer></script>
<script src="search.js" defer></script>
</head>
<body>
<header class="topbar"><a href="index.html">{html.escape(site_title)}</a>
<div class="search"><input id="search" type="search" placeholder="Search names and pages" aria-label="Search the documentation"
 autocomplete="off" hidden><ol id="search-results" hidden></ol></div></header>
<div class="layout">
{nav}
<main>
{body}
<footer>{source}</footer>
</main>
{toc}
</div>
</body>
</html>
"""
