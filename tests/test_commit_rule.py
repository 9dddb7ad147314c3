"""Who commits (docs/architecture.md, "Who commits"): the services do; the routers, the
request dependencies and the worker's modules never end a transaction themselves, neither by
`.commit()` nor through backend.db.session_scope (which commits on leaving)."""

import ast

from tests.conftest import ROOT

# the API's HTTP layer and the worker's adapters (the training library has no database)
NEVER_COMMIT = [
    *sorted((ROOT / "backend" / "routers").glob("*.py")),
    ROOT / "backend" / "deps.py",
    ROOT / "backend" / "main.py",
    *sorted((ROOT / "worker").glob("*.py")),
]


def _commit_sites(source: str) -> list[tuple[int, str]]:
    """(line, how) of every way the source ends a transaction."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "commit":
                found.append((node.lineno, "calls .commit()"))
        elif isinstance(node, ast.Name) and node.id == "session_scope":
            found.append((node.lineno, "uses session_scope"))
        elif isinstance(node, ast.ImportFrom) and "session_scope" in {a.name for a in node.names}:
            found.append((node.lineno, "imports session_scope"))
    return found


def test_routers_dependencies_and_tasks_never_commit():
    assert [p.name for p in NEVER_COMMIT if p.name.endswith("_tasks.py")] == [
        "evaluation_tasks.py",
        "study_tasks.py",
        "training_tasks.py",
    ]
    found = [
        f"{path.relative_to(ROOT)}:{line} {how}"
        for path in NEVER_COMMIT
        for line, how in _commit_sites(path.read_text())
    ]
    assert found == [], "commit in a service instead:\n" + "\n".join(found)


def test_the_check_sees_every_way_of_committing():
    sample = (
        "from backend.db import session_scope\n"
        "def f(db):\n"
        "    db.commit()\n"
        "    with session_scope() as s:\n"
        "        s.add(1)\n"
    )
    assert [line for line, _ in _commit_sites(sample)] == [1, 3, 4]
