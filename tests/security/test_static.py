"""Nothing from a request is ever unpickled, imported or evaluated: a static check of the sources.

Every call in service/, workers/ and lcw/ that can run code from data (``pickle``/``marshal``/
``dill``/``cloudpickle``/``shelve`` loads, ``eval``/``exec``/``compile``/``__import__``,
``importlib.import_module``, a YAML loader other than ``safe_load``, ``np.load`` with pickles
allowed, ``torch.load``, a shell) must be on the allow-list below, each with the reason it
never sees request data. A new one fails this test until someone writes down why it is safe.

Documented exceptions:
- ``lcw/data.py`` unpickles the CIFAR-10/100 batches (the datasets' own format) from the local
  data directory the operator filled; the dataset name is checked against ``lcw.catalog`` before
  any path is built, and no request carries a path or a file.
- ``lcw/__init__.py`` imports its own submodules lazily, from a fixed name table.
Ray pickles the trial configs and metrics it moves between the dispatcher and its actors: that is
cluster-internal traffic of values the service built after validating the spec, never bytes a
client sent. Request bodies are parsed with ``json.loads`` and ``yaml.safe_load`` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("service", "workers", "lcw")

DANGEROUS_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "dill", "cloudpickle", "shelve"}
DANGEROUS_CALLS = {
    "eval",
    "exec",
    "compile",
    "__import__",
    "importlib.import_module",
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "yaml.load_all",
    "yaml.unsafe_load_all",
    "torch.load",
    "os.system",
    "os.popen",
    "jsonpickle.decode",
}

# (file, dotted name) -> why it is safe
ALLOWED = {
    ("lcw/data.py", "import pickle"): "CIFAR pickles from the local data directory",
    ("lcw/data.py", "pickle.load"): "CIFAR pickles from the local data directory",
    ("lcw/__init__.py", "importlib.import_module"): "lazy import of lcw's own modules",
    ("workers/ray_connect.py", "importlib.import_module"): (
        "the constant name 'psutil', vendored with Ray and importable only once ray is"
    ),
    ("lcw/checkpoint.py", "torch.load"): (
        "a trial's own checkpoint from LCW_CHECKPOINT_DIR (operator-set), weights_only=True"
    ),
}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _findings(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names]
            for name in names:
                if name.split(".")[0] in DANGEROUS_MODULES:
                    out.append((f"import {name.split('.')[0]}", node.lineno))
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            if name in DANGEROUS_CALLS or (name and name.split(".")[0] in DANGEROUS_MODULES):
                out.append((name, node.lineno))
            elif name in ("np.load", "numpy.load"):
                flag = keywords.get("allow_pickle")
                if not (flag is None or (isinstance(flag, ast.Constant) and flag.value is False)):
                    out.append((f"{name}(allow_pickle=...)", node.lineno))
            elif name and name.startswith("subprocess."):
                shell = keywords.get("shell")
                if shell is not None and not (
                    isinstance(shell, ast.Constant) and shell.value is False
                ):
                    out.append((f"{name}(shell=...)", node.lineno))
    return out


def test_no_source_can_run_code_from_request_data() -> None:
    unexplained = []
    seen = set()
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for what, line in _findings(path):
                seen.add((rel, what))
                if (rel, what) not in ALLOWED:
                    unexplained.append(f"{rel}:{line}: {what}")
    assert not unexplained, "code that can execute data; explain it in ALLOWED or remove it:\n" + (
        "\n".join(unexplained)
    )
    # The allow-list stays honest: every entry still matches something.
    assert set(ALLOWED) <= seen, set(ALLOWED) - seen


def test_the_checker_catches_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text(
        "import pickle, yaml, importlib, subprocess\n"
        "import numpy as np\n"
        "def f(body):\n"
        "    pickle.loads(body)\n"
        "    eval(body)\n"
        "    yaml.load(body)\n"
        "    importlib.import_module(body)\n"
        "    np.load(body, allow_pickle=True)\n"
        "    subprocess.run(body, shell=True)\n"
        "    model.eval()\n"  # a method named eval is fine
        "    yaml.safe_load(body)\n"
    )
    found = {what for what, _ in _findings(sample)}
    assert found == {
        "import pickle",
        "pickle.loads",
        "eval",
        "yaml.load",
        "importlib.import_module",
        "np.load(allow_pickle=...)",
        "subprocess.run(shell=...)",
    }


def test_the_only_parsers_of_request_bodies_are_json_and_safe_yaml() -> None:
    # service/documents.py parses every spec body (the API's and the CLI's spec files);
    # service/spec.py validates what it returns.
    parser = (REPO / "service" / "documents.py").read_text()
    assert "json.loads(raw)" in parser and "yaml.safe_load(raw)" in parser
    yaml_calls = {
        _dotted(n.func)
        for name in ("documents.py", "spec.py")
        for n in ast.walk(ast.parse((REPO / "service" / name).read_text()))
        if isinstance(n, ast.Call) and (_dotted(n.func) or "").startswith("yaml.")
    }
    assert yaml_calls == {"yaml.safe_load"}, yaml_calls


def test_templates_are_autoescaped_and_never_marked_safe() -> None:
    pages = (REPO / "service" / "web" / "pages.py").read_text()
    assert "select_autoescape(default=True, default_for_string=True)" in pages
    assert "Markup(" not in pages
    for template in (REPO / "service" / "web" / "templates").glob("*.html"):
        text = template.read_text()
        assert "|safe" not in text.replace(" ", ""), template.name
        assert "autoescape false" not in text, template.name
