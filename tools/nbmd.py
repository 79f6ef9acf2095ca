"Notebook -> Markdown/HTML without Quarto: the shared cell filter used by readme.py and build_docs.py."
import base64, hashlib, json, re
from pathlib import Path

HIDE = re.compile(r"^#\|\s*(hide|include:\s*false)\s*$", re.M)
NO_ECHO = re.compile(r"^#\|\s*echo:\s*false\s*$", re.M)
DIRECTIVE = re.compile(r"^#\|.*\n?", re.M)


def visible_cells(nb):
    "Yield (kind, source, outputs, echo) for the cells a reader sees; hidden cells and directives are dropped."
    for c in nb["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "markdown":
            yield "markdown", src, [], True
        elif c["cell_type"] == "code":
            if HIDE.search(src): continue
            yield "code", DIRECTIVE.sub("", src).strip(), c.get("outputs", []), not NO_ECHO.search(src)


def to_markdown(nb_path, img_dir, img_prefix):
    "Render a notebook as Markdown; image outputs are written to img_dir and linked as img_prefix/name."
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for kind, src, outputs, echo in visible_cells(nb):
        if kind == "markdown":
            parts.append(src.replace("](../", "]("))
            continue
        if echo and src: parts.append(f"```python\n{src}\n```")
        for o in outputs:
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
