"""Build the documentation site from the notebooks without Quarto: one HTML page per notebook plus an index.

    python tools/build_docs.py [--out docs/_site] [--check]

With Quarto installed, `nbdev_docs` builds the full nbdev site from nbs/_quarto.yml instead. --check fails
when a notebook has no title, a page comes out empty, or a link between notebooks points nowhere."""
import argparse, html, json, re, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from nbmd import visible_cells
import nbformat
from nbconvert import HTMLExporter

root = Path(__file__).resolve().parent.parent
p = argparse.ArgumentParser()
p.add_argument("--out", default=str(root / "docs" / "_site"))
p.add_argument("--check", action="store_true")
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)

nbs = sorted((root / "nbs").glob("*.ipynb"), key=lambda f: (f.stem != "index", f.stem))
titles, problems = {}, []
for f in nbs:
    nb = json.loads(f.read_text())
    first = next((s for k, s, _, _ in visible_cells(nb) if k == "markdown"), "")
    m = re.match(r"#\s+(.+)", first.strip())
    if not m: problems.append(f"{f.name}: the first markdown cell must start with '# Title'")
    titles[f.stem] = m.group(1).strip() if m else f.stem

nav = "".join(f'<li><a href="{s}.html">{html.escape(t)}</a></li>' for s, t in titles.items())
exporter = HTMLExporter(template_name="lab")
exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
for f in nbs:
    nb = nbformat.read(f, as_version=4)
    md = "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for target in re.findall(r"\]\((?!https?:)([\w./-]+)\.ipynb\)", md):
        if not (root / "nbs" / f"{target}.ipynb").exists(): problems.append(f"{f.name}: link to missing {target}.ipynb")
    nb.cells = [c for c in nb.cells if not (c.cell_type == "code" and re.search(r"^#\|\s*hide\s*$", c.source, re.M))]
    for c in nb.cells:
        if c.cell_type == "code": c.source = re.sub(r"^#\|.*\n?", "", c.source, flags=re.M)
        if c.cell_type == "markdown":
            c.source = re.sub(r"\]\((?!https?:)([\w./-]+)\.ipynb\)", r"](\1.html)", c.source)
    body, _ = exporter.from_notebook_node(nb)
    body = body.replace("<body", '<body data-nav="1"', 1).replace(
        "<main>", f'<main><nav style="padding:1em;border-bottom:1px solid #ddd"><ul style="display:flex;gap:1.5em;list-style:none;flex-wrap:wrap">{nav}</ul></nav>', 1)
    (out / f"{f.stem}.html").write_text(body)
    if args.check:
        if len(body) < 1000: problems.append(f"{f.name}: rendered page is empty")

print(f"docs: {len(nbs)} pages written to {out}")
if problems:
    print("docs problems:\n  " + "\n  ".join(problems)); sys.exit(1)
