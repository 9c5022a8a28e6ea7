"""Regenerate the transforms golden files on purpose.

    .venv/bin/python tests/transforms/regen_golden.py [case...]


Review the diff before handing it in: every changed line is a behaviour change.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transforms_golden import FIXTURES, all_cases, write_case  # noqa: E402


def main(argv: list[str]) -> int:
    if not FIXTURES.is_dir():
        print(f"fixtures not found at {FIXTURES}", file=sys.stderr)
        return 1
    wanted = set(argv)
    for case in all_cases():
        if not wanted or case["case"] in wanted:
            print(write_case(case))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
