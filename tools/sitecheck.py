"""Static checks of a built site, no browser needed: titles, raw TeX or a math placeholder left, `#|` directives shown,
images and scripts from other hosts, and internal links (pages and #anchors) that point nowhere."""
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

PLACEHOLDER = re.compile("\x02[^\x03]{0,12}\x03?|\x03")  # nbhtml's math placeholders are \x02M<n>\x03: never in a finished page
RAW_TEX = re.compile(r"\$\$|\$(?!\s)(?:[^$\n]|\n(?![ \t]*\n))+?(?<!\s)\$(?!\d)")  # what nbhtml would have rendered
NOT_TEXT = {"pre", "code", "math", "script", "style", "title"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Parsed(HTMLParser):
    "What a page holds: its ids, link and image targets, <title>, first <h1>, visible text and <pre> text."

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.ids, self.hrefs, self.srcs, self.stack = set(), [], [], []
        self.title = self.h1 = None
        self.visible, self.pre = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a: self.ids.add(a["id"])
        if tag == "a" and a.get("href") is not None: self.hrefs.append(a["href"])
        if tag in ("img", "link", "script") and (a.get("src") or a.get("href")):
            if not (tag == "link" and a.get("rel") == "icon"): self.srcs.append(a.get("src") or a.get("href"))
        if tag not in VOID: self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag: pass

    def handle_data(self, data):
        if "title" in self.stack and self.title is None: self.title = data.strip()
        if "h1" in self.stack and self.h1 is None: self.h1 = data.strip()
        if "pre" in self.stack: self.pre.append(data)
        elif not NOT_TEXT & set(self.stack): self.visible.append(data)


def check_site(out, titles):
    "Problems in the site at `out`; `titles` maps page file -> the title it must have."
    out, problems, pages = Path(out), [], {}
    for f in sorted(out.glob("*.html")):
        text = f.read_text()
        for m in PLACEHOLDER.finditer(text):
            problems.append(f"{f.name}: a math placeholder is left in the page: {text[max(0, m.start() - 40):m.end() + 40]!r}")
        pages[f.name] = Parsed(text)
    n_links = 0
    for name, p in pages.items():
        want = titles.get(name)
        if want and not (p.title or "").startswith(want): problems.append(f"{name}: <title> is {p.title!r}, not {want!r}")
        if want and p.h1 != want: problems.append(f"{name}: first heading is {p.h1!r}, not {want!r}")
        text = " ".join(p.visible)
        for m in RAW_TEX.finditer(text): problems.append(f"{name}: raw TeX in the page: {text[max(0, m.start() - 30):m.end() + 30]!r}")
        if "#|" in "".join(p.pre): problems.append(f"{name}: a `#|` directive is shown in a code cell")
        for src in p.srcs:
            if re.match(r"^(https?:)?//", src): problems.append(f"{name}: {src} is fetched from another host (breaks offline)")
            elif not (out / unquote(urlsplit(src).path)).exists(): problems.append(f"{name}: missing file {src}")
        for href in sorted(set(p.hrefs)):
            u = urlsplit(href)
            if u.scheme or u.netloc: continue
            n_links += 1
            target = unquote(u.path) or name
            if target not in pages:
                if not (out / target).exists(): problems.append(f"{name}: link to missing page {href}")
            elif u.fragment and unquote(u.fragment) not in pages[target].ids:
                problems.append(f"{name}: link to missing anchor {href}")
    return problems, {"pages": len(pages), "internal links": n_links}


def pre_text(path):
    "All text inside <pre> elements of a page (where code shows), to check hidden code stayed hidden."
    return "".join(Parsed(Path(path).read_text()).pre)
