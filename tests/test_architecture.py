"""The architecture, checked: a small public API, and a core that never touches a runtime or adapters."""

import ast
from pathlib import Path

import personalizer
from tests.runtime.harness import ROOT

FORBIDDEN = {"js", "pyodide", "workers", "httpx", "personalizer_adapters", "numpy"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_public_api_is_small_sorted_and_importable() -> None:
    """__all__ is sorted, every name exists."""
    assert personalizer.__all__ == sorted(personalizer.__all__)
    assert all(hasattr(personalizer, name) for name in personalizer.__all__)


def test_core_imports_no_runtime_no_adapter_no_heavy_library() -> None:
    """src/personalizer is sans-IO: no js/pyodide/workers/httpx, no adapters, no numpy (edge cold start)."""
    for path in (ROOT / "src" / "personalizer").glob("*.py"):
        assert not imported_modules(path) & FORBIDDEN, path.name


def test_msgpack_is_imported_in_exactly_one_module() -> None:
    """codec.py owns the format."""
    users = [p.name for p in (ROOT / "src").rglob("*.py") if "msgpack" in imported_modules(p)]
    assert users == ["codec.py"]


def test_core_is_flat_so_the_bundle_copy_is_complete() -> None:
    """The wrangler build step copies src/personalizer/*.py: the core must have no subpackages."""
    assert not [p for p in (ROOT / "src" / "personalizer").iterdir() if p.is_dir() and p.name != "__pycache__"]
