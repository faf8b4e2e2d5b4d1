"""House rules that hold for every source file of the project, checked on the syntax tree (so text in
strings and comments does not count): every pickle the project reads goes through the restricted
unpickler, matplotlib only through common/plotting.py, progress bars only through common/progress.py."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _project_files(*, tests: bool = True) -> list[Path]:
    """The project's own .py files: not the virtual environment, results, or hidden folders."""
    out = []
    for p in sorted(REPO.rglob("*.py")):
        parts = p.relative_to(REPO).parts
        if any(part.startswith(".") or part in ("results", "build") for part in parts[:-1]):
            continue
        if not tests and parts[0] == "tests":
            continue
        out.append(p)
    assert len(out) > 50, out   # the walk found the project, not an empty folder
    return out


def _dotted(node: ast.AST) -> str:
    """``np.load`` -> "np.load"; anything that is not a plain dotted name -> ""."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword(call: ast.Call, name: str):
    """The constant value of keyword ``name`` of ``call``; None when absent, "?" when not a constant."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "?"
    return None


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import, ``from a.b import c`` giving "a.b.c"."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO)}:{line}"


UNRESTRICTED_PICKLE_READERS = {"pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads",
                               "cPickle.load", "dill.load", "dill.loads", "joblib.load", "pd.read_pickle",
                               "pandas.read_pickle", "cloudpickle.load", "cloudpickle.loads", "shelve.open"}


def test_every_pickle_read_goes_through_the_restricted_unpickler():
    """Outside the tests (which write pickles to plant payloads), nothing calls pickle's loaders:
    CIFAR batches go through ``common.data.safe_unpickle``; ``np.load`` keeps allow_pickle=False
    (numpy's default) and ``torch.load`` has weights_only=True, both of which unpickle no code."""
    bad = []
    for path in _project_files(tests=False):
        tree = ast.parse(path.read_text(), str(path))
        for line, module in _imports(tree):
            if module in UNRESTRICTED_PICKLE_READERS:
                bad.append(f"{_where(path, line)}: imports {module}")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            if name in UNRESTRICTED_PICKLE_READERS:
                bad.append(f"{_where(path, node.lineno)}: {name}(...) (use common.data.safe_unpickle)")
            elif name in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") not in (None, False):
                bad.append(f"{_where(path, node.lineno)}: np.load with allow_pickle")
            elif name == "torch.load" and _keyword(node, "weights_only") is not True:
                bad.append(f"{_where(path, node.lineno)}: torch.load without weights_only=True")
    assert not bad, "pickles read without the restricted unpickler:\n" + "\n".join(bad)


@pytest.mark.parametrize("library,home", [("matplotlib", "common/plotting.py"), ("tqdm", "common/progress.py")])
def test_library_imported_only_through_its_common_module(library, home):
    """matplotlib is imported only by common/plotting.py (which selects the headless Agg backend
    first), tqdm only by common/progress.py (which keeps carriage-return bar frames out of logs)."""
    bad = []
    for path in _project_files():
        if path == REPO / home:
            continue
        for line, module in _imports(ast.parse(path.read_text(), str(path))):
            if module == library or module.startswith(library + "."):
                bad.append(f"{_where(path, line)}: imports {module}")
    assert not bad, f"{library} imported outside {home}:\n" + "\n".join(bad)
