"""The frontend's dependencies point one way too (frontend/README.md): app.js routes to pages,
a page uses components and lib/, a component uses lib/ (and other components), lib/ uses only
lib/. No page imports another page: what two pages share is a component or a helper in lib/.
And the production bundle carries no test hooks: the browser tests reach the page's state
through the DOM, the canvas and the API."""

import re
from pathlib import Path

from tests.conftest import ROOT

FRONTEND = ROOT / "frontend"

# `import x from "…"`, `import "…"`, `export { x } from "…"`, and `import("…")`
_SPECIFIER = re.compile(
    r"""(?:\bimport|\bexport)\s[^;"'`]*?\bfrom\s*["']([^"']+)["']"""
    r"""|\bimport\s*["']([^"']+)["']"""
    r"""|\bimport\s*\(\s*["']([^"']+)["']\s*\)"""
)
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"^\s*//.*$", re.M)


def _code(path: Path) -> str:
    """The file without its comments (the usage lines in headers name imports too)."""
    return _LINE_COMMENT.sub("", _BLOCK_COMMENT.sub("", path.read_text()))


def _imports(path: Path) -> list[tuple[str, Path]]:
    """(specifier, resolved file) of every static and dynamic import of a module."""
    out = []
    for match in _SPECIFIER.finditer(_code(path)):
        spec = next(s for s in match.groups() if s)
        if spec.startswith("/static/"):
            target = FRONTEND / spec.removeprefix("/static/")
        elif spec.startswith("."):
            target = path.parent / spec
        else:
            target = Path(spec)  # a bare name or a URL: outside the frontend's folders
        out.append((spec, target.resolve()))
    return out


def _modules(folder: str) -> list[Path]:
    return sorted((FRONTEND / folder).rglob("*.js"))


def _arrows(folder: str, forbidden) -> list[str]:
    bad = []
    for path in _modules(folder):
        for spec, target in _imports(path):
            if forbidden(path, target):
                bad.append(f"{path.relative_to(ROOT)} imports {spec}")
    return bad


def _inside(target: Path, folder: str) -> bool:
    return target.is_relative_to((FRONTEND / folder).resolve())


def test_the_import_scanner_sees_every_form_of_import(tmp_path):
    module = tmp_path / "page.js"
    module.write_text(
        '// Usage: import { mount } from "./commented.js";\n'
        'import { a } from "./one.js";\n'
        'import "./two.js";\n'
        "import {\n  b,\n  c,\n} from './three.js';\n"
        'export { d } from "./four.js";\n'
        'const m = await import("./five.js");\n'
    )
    specs = [spec for spec, _ in _imports(module)]
    assert specs == ["./one.js", "./two.js", "./three.js", "./four.js", "./five.js"]


def test_no_page_imports_another_page():
    """A page imports components and lib/ only; app.js alone loads pages."""
    assert _modules("pages")
    bad = _arrows(
        "pages", lambda path, target: _inside(target, "pages") and target != path.resolve()
    )
    assert bad == []


def test_components_and_lib_never_import_pages():
    """Components use lib/ and other components; lib/ uses only lib/."""
    bad = _arrows(
        "components", lambda _, target: _inside(target, "pages") or target.name == "app.js"
    )
    bad += _arrows("lib", lambda _, target: not _inside(target, "lib"))
    assert bad == []


def test_every_import_names_a_file():
    """A module moved between folders leaves no import behind that the server would 404."""
    missing = []
    for path in sorted(FRONTEND.rglob("*.js")):
        for spec, target in _imports(path):
            if (spec.startswith(".") or spec.startswith("/static/")) and not target.is_file():
                missing.append(f"{path.relative_to(ROOT)} imports {spec}")
    assert missing == []


def test_no_test_hooks_in_the_production_bundle():
    """Nothing hangs test state on window (as window.__maskCanvasStats once did): the
    browser tests measure and read the page from outside it."""
    hook = re.compile(r"\b(?:window|globalThis|self)\s*\.\s*__\w+")
    bad = []
    for path in sorted([*FRONTEND.rglob("*.js"), *FRONTEND.rglob("*.html")]):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if hook.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert bad == []
