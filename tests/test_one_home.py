"""One idea, one home: Eq. 1 is displayed where it is introduced (the index, the tour) and derived (`11_signal`), and
linked elsewhere; the table of defaults (whose choice each is) lives in the index alone."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQ1 = re.compile(r"\$\$\s*A_i\s*=")                                              # Eq. 1 as a display
DEFAULTS_HEAD = re.compile(r"^\|[^\n]*\bdefault[^\n]*\|[^\n]*\b(whose|follows)\b", re.IGNORECASE | re.MULTILINE)


def markdown(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def where(pattern: re.Pattern) -> set[str]:
    return {p.stem for p in (ROOT / "nbs").glob("*.ipynb")
            if any(pattern.search(md) for md in markdown(json.loads(p.read_text())))}


def test_eq1_is_displayed_only_where_it_is_introduced_or_derived():
    assert where(EQ1) <= {"index", "00_tour", "11_signal"}, where(EQ1)


def test_one_defaults_table():
    assert where(DEFAULTS_HEAD) == {"index"}, where(DEFAULTS_HEAD)


def test_the_patterns_find_what_they_guard():
    assert EQ1.search("the advantage\n\n$$A_i = \\log \\pi$$") and not EQ1.search("the advantage $A_i$ (Eq. 1)")
    assert DEFAULTS_HEAD.search("| setting (parameter) | default here | follows | why |")
    assert DEFAULTS_HEAD.search("| parameter | default | whose | alternative |")
    assert not DEFAULTS_HEAD.search("| function | shows | paper |")
