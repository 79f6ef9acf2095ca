"""Notebook -> Markdown without Quarto, and the cell filter shared by readme.py and build_docs.py.

Cell directives follow nbdev and Quarto: `#| hide` and `#| include: false` drop the cell, `#| echo: false` hides
its input (outputs stay), `#| output: false` hides its outputs, `#| code-fold: true` puts the input in a closed
<details> (HTML only). Directives are the `#|` lines at the top of a code cell; a reader never sees them."""
import base64, hashlib, json, re
from dataclasses import dataclass, field
from pathlib import Path

DIRECTIVE = re.compile(r"^#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$")


@dataclass
class Cell:
    "A cell as a reader sees it: `source` without directives, and what the directives say to show."
    kind: str
    source: str
    outputs: list = field(default_factory=list)
    directives: dict = field(default_factory=dict)

    @property
    def echo(self): return self.directives.get("echo") != "false"

    @property
    def fold(self): return self.directives.get("code-fold") in ("true", "show")

    @property
    def show_outputs(self): return self.directives.get("output") != "false"


def split_directives(src):
    "Split a code cell's source into ({directive: value}, code); directives are the leading `#|` lines."
    lines, directives = src.splitlines(), {}
    while lines and (DIRECTIVE.match(lines[0]) or not lines[0].strip()):
        m = DIRECTIVE.match(lines.pop(0))
        if m: directives[m.group(1).lower()] = m.group(2).strip().lower() or "true"
    return directives, "\n".join(lines).strip()


def hidden(directives):
    "True when nbdev/Quarto leave the cell out of the docs entirely (`#| hide`, `#| include: false`)."
    return "hide" in directives or directives.get("include") == "false"


def visible_cells(nb):
    "Yield the cells a reader sees, as `Cell`s; hidden cells are dropped and directives removed."
    for c in nb["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "markdown":
            yield Cell("markdown", src)
        elif c["cell_type"] == "code":
            directives, code = split_directives(src)
            if hidden(directives): continue
            yield Cell("code", code, c.get("outputs", []), directives)


def to_markdown(nb_path, img_dir, img_prefix):
    "Render a notebook as Markdown; image outputs are written to img_dir and linked as img_prefix/name."
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for cell in visible_cells(nb):
        if cell.kind == "markdown":
            parts.append(cell.source.replace("](../", "]("))
            continue
        if cell.echo and cell.source: parts.append(f"```python\n{cell.source}\n```")
        for o in cell.outputs if cell.show_outputs else []:
            data = o.get("data", {})
            if "image/png" in data:
                raw = base64.b64decode(data["image/png"])
                name = f"{Path(nb_path).stem}_{hashlib.sha1(raw).hexdigest()[:10]}.png"
                Path(img_dir).mkdir(parents=True, exist_ok=True)
                (Path(img_dir) / name).write_bytes(raw)
                parts.append(f"![]({img_prefix}/{name})")
            elif "text/markdown" in data:
                parts.append("".join(data["text/markdown"]))
            elif o.get("output_type") == "stream" and o.get("name") == "stdout":
                parts.append("```\n" + "".join(o["text"]).rstrip() + "\n```")
            elif "text/plain" in data:
                parts.append("```\n" + "".join(data["text/plain"]).rstrip() + "\n```")
    return "\n\n".join(p for p in parts if p.strip()) + "\n"
