"""Write backend/core/run_contract.py: the API's copy of worker/contract.py.

The run configuration belongs to the training library (worker/contract.py), and backend/
never imports worker/ (docs/architecture.md). The API validates launch forms with the same
rules through this generated copy; tests/test_layers.py fails when the two differ, and
`make contract` (this script) writes the copy again.

    python scripts/sync_contract.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "worker" / "contract.py"
COPY = ROOT / "backend" / "core" / "run_contract.py"
HEADER = (
    "# Generated from worker/contract.py by `make contract` (scripts/sync_contract.py): do not\n"
    "# edit here. The API's copy of the run configuration, so that backend/ never imports\n"
    "# worker/; tests/test_layers.py fails when the two differ.\n"
)


def expected() -> str:
    return HEADER + SOURCE.read_text()


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if not COPY.exists() or COPY.read_text() != expected():
            print(f"{COPY.relative_to(ROOT)} is out of date: run `make contract`", file=sys.stderr)
            return 1
        return 0
    COPY.write_text(expected())
    print(f"wrote {COPY.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
