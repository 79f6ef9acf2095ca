"""The API reference without Quarto: what nbdev's `show_doc` gives (signature, docstring, parameter table), for
every name in each module's `__all__`, plus the public methods of classes.

Modules are discovered from hindsight_ref/_modidx.py (nbdev writes it on export and it lists every module), so new
modules and packages need no change here; each module's source notebook is the one its header names
("File to edit: ../nbs/NAME.ipynb")."""
import ast, dataclasses, html, importlib, inspect, re
from dataclasses import dataclass, field
from pathlib import Path
from fastcore.docments import docments


@dataclass
class Entry:
    "One documented name: `kind` is function, class, method, property or data; `doc` is None when missing."
    qualname: str
    kind: str
    signature: str
    doc: str | None
    params: dict = field(default_factory=dict)
    members: list = field(default_factory=list)

    @property
    def name(self): return self.qualname.rsplit(".", 1)[-1]


@dataclass
class Module:
    "A module of the package, the notebook that builds it (stem), and its documented names."
    name: str
    notebook: str
    doc: str
    entries: list


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
    "`name(params)` as show_doc writes it (no self, no `-> None` on classes), a parameter a line past 100 characters."
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return f"{name}(...)"
    bare = lambda a: _Bare(a) if isinstance(a, str) else a
    params = [str(p.replace(annotation=bare(p.annotation))) for p in list(sig.parameters.values())[1 if method else 0:]]
    ret = sig.return_annotation
    ret = "" if ret is inspect.Signature.empty or inspect.isclass(obj) else f" -> {inspect.formatannotation(bare(ret))}"
    one = f"{name}({', '.join(params)}){ret}"
    return one if len(one) <= 100 else f"{name}(\n    " + ",\n    ".join(params) + f"\n){ret}"


def param_table(obj):
    "show_doc's table (type, default, details) when some parameter carries a docment comment, else {}."
    try: d = docments(obj, full=True)
    except Exception: return {}  # builtins and C extensions have no source to read comments from
    if not any(v.get("docment") for v in d.values()): return {}
    if not d.get("return", {}).get("docment"): d.pop("return", None)
    return {k: v for k, v in d.items() if k not in ("self", "cls")}


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
        else: out.append(Entry(f"{qualname}.{k}", "method", signature(f, k, method=not isinstance(v, staticmethod)), doc, param_table(f)))
    return out


def entry(mod, name):
    "The reference entry for `mod.name`."
    obj, qual = getattr(mod, name), f"{mod.__name__}.{name}"
    if inspect.isclass(obj):
        return Entry(qual, "class", signature(obj, name), own_doc(obj), param_table(obj), members(obj, qual))
    if callable(obj): return Entry(qual, "function", signature(obj, name), own_doc(obj), param_table(obj))
    r = repr(obj)
    return Entry(qual, "data", f"{name}: {type(obj).__name__} = {r if len(r) <= 100 else r[:97] + '...'}", None)


def modules(root, lib):
    "Every module of the package with its entries, in the order of its `__all__`."
    out = []
    for name in modidx(root, lib)["syms"]:
        mod = importlib.import_module(name)
        out.append(Module(name, source_notebook(mod.__file__), inspect.getdoc(mod) or "",
                          [entry(mod, n) for n in getattr(mod, "__all__", [])]))
    return out


def undocumented(mods):
    "Problems: every public function, class, method or property without a docstring of its own."
    return [f"{m.notebook}.ipynb: {e.qualname} ({e.kind}) has no docstring"
            for m in mods for top in m.entries for e in [top, *top.members] if e.kind != "data" and not e.doc]


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


def entry_html(e, md, source_href, source_label):
    "One entry of the reference page; `md` renders Markdown (docstrings may hold math and code)."
    doc = md(e.doc) if e.doc else '<p class="missing">No docstring.</p>'
    rows = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td>{_anno(v.get('anno'))}</td><td>{_default(v)}</td>"
                   f"<td>{html.escape(v.get('docment') or '')}</td></tr>" for k, v in e.params.items())
    table = f'<table class="params"><tr><th></th><th>Type</th><th>Default</th><th>Details</th></tr>{rows}</table>' if rows else ""
    mem = "".join(entry_html(m, md, None, None) for m in e.members)
    src = f'<p class="source">Defined in <a href="{source_href}">{html.escape(source_label)}</a></p>' if source_href else ""
    tag = "h3" if e.kind != "method" and e.kind != "property" else "h4"
    return (f'<div class="api-entry {e.kind}" id="{e.qualname}"><{tag}><code>{html.escape(e.name)}</code> '
            f'<span class="kind">{e.kind}</span></{tag}><pre class="sig"><code>{html.escape(e.signature)}</code></pre>'
            f'{"" if e.kind == "data" else doc}{table}{src}{f"<div class=members>{mem}</div>" if mem else ""}</div>\n')


def _anno(a):
    if a is None or a is inspect.Parameter.empty: return ""
    return f"<code>{html.escape(a if isinstance(a, str) else inspect.formatannotation(a))}</code>"


def _default(v):
    d = v.get("default", inspect.Parameter.empty)
    return "" if d is inspect.Parameter.empty else f"<code>{html.escape(repr(d))}</code>"
