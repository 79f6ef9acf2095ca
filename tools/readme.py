"""Write README.md from nbs/index.ipynb without Quarto (users with Quarto can run `nbdev_readme` instead).

Images in the notebook's outputs go to docs/images/. The test command runs this and fails when README.md
would change, so the README never drifts from the landing notebook."""
import re, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from nbmd import to_markdown

root = Path(__file__).resolve().parent.parent
banner = "<!-- This file is written from nbs/index.ipynb by tools/readme.py; edit the notebook, not this file. -->\n\n"
md = banner + to_markdown(root / "nbs" / "index.ipynb", root / "docs" / "images", "docs/images")
md = re.sub(r"\]\(([\w-]+\.ipynb)\)", r"](nbs/\1)", md)  # links between notebooks, seen from the repository root
for stale in (root / "docs" / "images").glob("index_*.png"):  # images of earlier versions of the notebook
    if stale.name not in md: stale.unlink()
out = root / "README.md"
if not out.exists() or out.read_text() != md:
    out.write_text(md)
    print("README.md written from nbs/index.ipynb")
