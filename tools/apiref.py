"""The API reference without Quarto: what nbdev's `show_doc` gives (signature, docstring, parameter table, a link to
the source), one page per module, for every name in each module's `__all__` plus the public methods of classes.

Modules are discovered from hindsight_ref/_modidx.py (nbdev writes it on export and it lists every module and, per
name, its anchor on the notebook's page), so new modules and packages need no change here; each module's source
notebook is the one its header names ("File to edit: ../nbs/NAME.ipynb"). COURSE below groups the modules as the
course does: the one list to change when the course is reordered."""
import ast, dataclasses, html, importlib, inspect, re
from dataclasses import dataclass, field
from pathlib import Path
from fastcore.docments import docments

# The course's parts, in reading order, and the modules each builds (names relative to the package). A module that
# is missing here is listed under "Other modules" and the build says so.
COURSE = [
    ("Part I, the signal", ["contexts", "signal", "viz", "probe"]),
    ("Part II, learning", ["losses", "estimators", "sampling", "train", "trainers"]),
    ("Part III, the paper's experiments", ["simulators", "evaluation", "protocols", "toyworld.world", "toyworld.model",
                                           "toyworld.experiments", "toyworld.stability"]),
    ("Appendices, the engineering", ["models", "data", "fused", "backends", "hf", "demo", "cli"]),
]
# Public because other modules, the notebook or the tests use them, but not what a user of the library calls: listed
# last on their page, marked.
HELPERS = {"models.cache_dir", "models.file_lock", "models.build_once", "models.quiet_loading", "toyworld.model.torch_threads",
           "cli.OneLineParser", "cli.int_at_least", "cli.error_line", "cli.resume_hint", "demo.recipe_text", "demo.demo_command",
           "demo.run_info", "viz.emoji_font", "viz.font_family", "viz.is_emoji", "viz.text_width", "viz.char_spans",
           "probe.figure_png", "probe.probe_html", "protocols.cache_key", "protocols.optimizer_state_bytes",
           "trainers.checkpoints_in", "trainers.resume_conflicts"}
SIG_WIDTH = 76  # what the page's column shows without scrolling
MIN_PARAMS = 3  # a public callable with this many parameters or more needs every one of them described


@dataclass
class Entry:
    "One documented name: `kind` is function, class, method, property or data; `doc` is None when missing."
    qualname: str
    kind: str
    signature: str
    doc: str | None
    params: dict = field(default_factory=dict)
    members: list = field(default_factory=list)
    example: str | None = None
    source: str | None = None     # page#anchor of the notebook cell that defines it (from _modidx.py)

    @property
    def name(self): return self.qualname.rsplit(".", 1)[-1]

    @property
    def missing_params(self) -> list:
        "The parameters without a description, when there are MIN_PARAMS or more of them (else [])."
        names = [k for k in self.params if k != "return"]
        return [k for k in names if not self.params[k].get("docment")] if len(names) >= MIN_PARAMS else []


@dataclass
class Module:
    "A module of the package, the notebook that builds it (stem), and its documented names."
    name: str
    notebook: str
    doc: str
    entries: list

    @property
    def short(self): return self.name.split(".", 1)[1] if "." in self.name else self.name

    @property
    def page(self): return f"api-{self.short}.html"

    def helper(self, e): return f"{self.short}.{e.name}" in HELPERS


def modidx(root, lib):
    "The `d` dict of lib/_modidx.py, read without importing the package."
    tree = ast.parse((Path(root) / lib / "_modidx.py").read_text())
    return ast.literal_eval(next(n.value for n in tree.body if isinstance(n, ast.Assign)))


def source_notebook(py_file):
    "The notebook stem named in an nbdev module's header, or None when the file was not written by nbdev."
    m = re.search(r"File to edit: \S*?([^/\s]+)\.ipynb", Path(py_file).read_text()[:2000])
    return m.group(1) if m else None


def own_doc(obj):
    "The docstring written on obj itself: not inherited, not the one @dataclass makes up from the fields."
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and doc and doc.startswith(obj.__name__ + "("): doc = None
    return inspect.cleandoc(doc) if doc and doc.strip() else None


class _Bare(str):
    "An annotation kept as text (modules use `from __future__ import annotations`), shown without quotes."
    def __repr__(self): return str(self)


def signature(obj, name, method=False):
    "`name(params)` as show_doc writes it (no self, no `-> None` on classes), a parameter a line past SIG_WIDTH characters."
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return f"{name}(...)"
    bare = lambda a: _Bare(a) if isinstance(a, str) else a
    params = [str(p.replace(annotation=bare(p.annotation))) for p in list(sig.parameters.values())[1 if method else 0:]]
    ret = sig.return_annotation
    ret = "" if ret is inspect.Signature.empty or inspect.isclass(obj) else f" -> {inspect.formatannotation(bare(ret))}"
    one = f"{name}({', '.join(params)}){ret}"
    return one if len(one) <= SIG_WIDTH else f"{name}(\n    " + ",\n    ".join(params) + f"\n){ret}"


_SECTION = re.compile(r"^[ \t]*(Args|Arguments|Parameters|Params)[ \t]*:?[ \t]*\n([ \t]*-{3,}[ \t]*\n)?", re.M)


def docstring_params(doc):
    """(docstring without its parameter list, {name: description}) for a Google-style `Args:` list (`name: text` or
    `name (type): text`) or a NumPy-style `Parameters` list (`name : type`, the text indented below)."""
    if not doc: return doc, {}
    m = _SECTION.search(doc)
    if not m: return doc, {}
    numpy, out, name, indent, end = bool(m.group(2)), {}, None, None, m.end()
    item = re.compile(r"^`?(\w+)`?\s*:\s*(.*)$" if numpy else r"^`?(\w+)`?\s*(?:\([^)]*\))?\s*:\s*(.*)$")
    for line in doc[m.end():].split("\n"):
        depth, text = len(line) - len(line.lstrip()), line.strip()
        if text and indent is None: indent = depth
        if text and depth < (indent or 0): break
        hit = item.match(text) if text and depth == indent else None
        if hit: name, out[hit.group(1)] = hit.group(1), "" if numpy else hit.group(2).strip()
        elif text and depth == indent: break
        elif text and name: out[name] = f"{out[name]} {text}".strip()
        end += len(line) + 1
    return (doc[:m.start()] + doc[end:]).strip() or None, out


def param_table(obj, doc=None):
    "Rows {name: {anno, default, docment}} of every parameter: docments comments first, then the docstring's list."
    try: d = docments(obj, full=True, args_kwargs=True)
    except Exception: return {}  # builtins and C extensions have no source to read comments from
    _, listed = docstring_params(doc)
    rows = {k: dict(v) for k, v in d.items() if k not in ("self", "cls")}
    for k, text in listed.items():
        if k in rows and text and not rows[k].get("docment"): rows[k]["docment"] = text
    if not rows.get("return", {}).get("docment"): rows.pop("return", None)
    return rows


def _func(v):
    "The function behind a class attribute (staticmethod, classmethod, property), or None."
    if isinstance(v, property): return v.fget
    if isinstance(v, (staticmethod, classmethod)): return v.__func__
    return v if inspect.isfunction(v) else None


def base_doc(cls, k):
    "The docstring a base class gives the attribute `k` (an override needs no copy of it), or None."
    return next((own_doc(_func(b.__dict__[k])) for b in cls.__mro__[1:-1] if _func(b.__dict__.get(k))), None)


def members(cls, qualname):
    "The public methods and properties a class defines itself (inherited ones are documented where they live)."
    out = []
    for k, v in cls.__dict__.items():
        f = _func(v)
        if k.startswith("_") or f is None: continue
        doc = own_doc(v if isinstance(v, property) else f) or base_doc(cls, k)
        if isinstance(v, property): out.append(Entry(f"{qualname}.{k}", "property", k, doc))
        else: out.append(Entry(f"{qualname}.{k}", "method", signature(f, k, method=not isinstance(v, staticmethod)), doc,
                               param_table(f, doc)))
    return out


def builds_itself(cls) -> bool:
    "Whether the constructor of `cls` is the package's own (a subclass of ArgumentParser or RuntimeError documents no parameters)."
    owner = next((b for b in cls.__mro__ if "__init__" in b.__dict__), object)
    return owner.__module__.split(".")[0] == cls.__module__.split(".")[0]


def entry(mod, name):
    "The reference entry for `mod.name`."
    obj, qual = getattr(mod, name), f"{mod.__name__}.{name}"
    if inspect.isclass(obj):
        doc = own_doc(obj)
        params = param_table(obj, doc) if builds_itself(obj) else {}
        return Entry(qual, "class", signature(obj, name), doc, params, members(obj, qual))
    if callable(obj):
        doc = own_doc(obj)
        return Entry(qual, "function", signature(obj, name), doc, param_table(obj, doc))
    r = repr(obj)
    return Entry(qual, "data", f"{name}: {type(obj).__name__} = {r if len(r) <= 100 else r[:97] + '...'}", None)


def modules(root, lib):
    "Every module of the package with its entries, in the order of its `__all__`; source links from _modidx.py."
    out, idx = [], modidx(root, lib)["syms"]
    for name, syms in idx.items():
        mod = importlib.import_module(name)
        entries = [entry(mod, n) for n in getattr(mod, "__all__", [])]
        for e in entries: e.source = (syms.get(e.qualname) or (None,))[0]
        out.append(Module(name, source_notebook(mod.__file__), inspect.getdoc(mod) or "", entries))
    return out


def course_groups(mods):
    "[(part title, [Module])] in COURSE order; modules COURSE does not name come last, under 'Other modules'."
    by_short = {m.short: m for m in mods}
    groups = [(title, [by_short[s] for s in shorts if s in by_short]) for title, shorts in COURSE]
    named = {s for _, shorts in COURSE for s in shorts}
    other = [m for m in mods if m.short not in named]
    return [g for g in groups if g[1]] + ([("Other modules", other)] if other else [])


def examples(nb):
    """{name: code}: the first code cell after the export cell that defines `name` (explanations in Markdown may come
    between) that uses the name, before the next export cell; hidden cells are not examples."""
    cells, out = nb["cells"], {}
    is_export = lambda c: c["cell_type"] == "code" and re.match(r"\s*#\|\s*export", "".join(c["source"]))
    for i, c in enumerate(cells):
        if not is_export(c): continue
        names = [n for n in defined_names("".join(c["source"])) if n not in out]
        for nxt in cells[i + 1:]:
            if is_export(nxt) or not names: break
            code = "".join(nxt["source"])
            if nxt["cell_type"] != "code" or re.match(r"\s*#\|\s*(hide|include:\s*false)", code): continue
            code = "\n".join(l for l in code.splitlines() if not l.startswith("#|")).strip()
            for n in [n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}\b", code)]:
                out[n] = code; names.remove(n)
    return out


def undocumented(mods):
    "Problems: every public function, class, method or property without a docstring of its own."
    return [f"{m.notebook}.ipynb: {e.qualname} ({e.kind}) has no docstring"
            for m in mods for top in m.entries for e in [top, *top.members] if e.kind != "data" and not e.doc]


def missing_param_tables(mods):
    "Lines naming each public callable with MIN_PARAMS+ parameters whose parameters are not all described."
    return [f"{m.notebook}.ipynb: {e.qualname} ({e.kind}): {len(e.missing_params)} of "
            f"{len([k for k in e.params if k != 'return'])} parameters undescribed ({', '.join(e.missing_params)})"
            for m in mods for top in m.entries for e in [top, *top.members] if e.missing_params]


def defined_names(code):
    "Top-level names an exported cell defines (def, class, assignment); the cell gets an anchor for each."
    try: tree = ast.parse(code)
    except SyntaxError: return []  # cells with magics
    names = []
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): names.append(n.name)
        elif isinstance(n, ast.Assign): names += [t.id for t in n.targets if isinstance(t, ast.Name)]
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name): names.append(n.target.id)
    return [n for n in names if not n.startswith("_")]


EXAMPLE_OPEN_LINES = 12  # longer examples start folded


def entry_html(e, md, code, source_label, helper=False):
    "One entry: heading with a source link, signature, docstring (Markdown), parameter table, example, members."
    body, _ = docstring_params(e.doc)
    doc = md(body) if body else ("" if e.doc else '<p class="missing">No docstring.</p>')
    rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{_anno(v.get('anno'))}</td><td>{_default(v)}</td>"
                   f"<td>{md(v['docment']) if v.get('docment') else ''}</td></tr>" for k, v in e.params.items())
    table = (f'<table class="params"><tr><th>Parameter</th><th>Type</th><th>Default</th><th>Details</th></tr>{rows}</table>'
             if rows and any(v.get("docment") for v in e.params.values()) else "")
    missing = f' data-undescribed="{len(e.missing_params)}"' if e.missing_params else ""
    mem = "".join(entry_html(m, md, code, source_label) for m in e.members)
    src = f' <a class="source" href="{e.source}" title="where it is derived and defined">source in {html.escape(source_label)}</a>' \
        if e.source else ""
    ex = ""
    if e.example:
        state = " open" if e.example.count("\n") < EXAMPLE_OPEN_LINES else ""
        ex = f'<details class="example"{state}><summary>Example, from the notebook</summary>{code(e.example)}</details>'
    tag = "h4" if e.kind in ("method", "property") else "h3"
    mark = ' <span class="helper-mark">helper</span>' if helper else ""
    return (f'<div class="api-entry {e.kind}" id="{e.qualname}"{missing}><{tag}><code>{html.escape(e.name)}</code> '
            f'<span class="kind">{e.kind}</span>{mark}{src}</{tag}><pre class="sig"><code>{html.escape(e.signature)}</code></pre>'
            f'{doc}{table}{ex}{f"<div class=members>{mem}</div>" if mem else ""}</div>\n')


def constants_html(entries):
    "The module's constants as one table (name, type, value), each row an anchor."
    rows = "".join(f'<tr id="{e.qualname}"><td><code>{html.escape(e.name)}</code></td>'
                   f'<td><code>{html.escape(e.signature.split(": ", 1)[1].split(" = ", 1)[0])}</code></td>'
                   f'<td><code>{html.escape(e.signature.split(" = ", 1)[1])}</code></td></tr>' for e in entries)
    return f'<table class="constants"><tr><th>Constant</th><th>Type</th><th>Value</th></tr>{rows}</table>'


def _anno(a):
    if a is None or a is inspect.Parameter.empty: return ""
    return f"<code>{html.escape(a if isinstance(a, str) else inspect.formatannotation(a))}</code>"


def _default(v):
    d = v.get("default", inspect.Parameter.empty)
    return "" if d is inspect.Parameter.empty else f"<code>{html.escape(repr(d))}</code>"
