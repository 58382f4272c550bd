"""Run every benchmark in bench/ (or the one named) and print each one's last line.

Usage: python bench/run.py [NAME]. Expects LocalStack up (make bench starts it); deploys the
stack first (a no-op when unchanged) and applies migrations.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    names = (
        [argv[1]]
        if len(argv) > 1 and argv[1]
        else sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem != "run")
    )
    aob = [sys.executable, "-m", "aob.cli"]
    for step in (["migrate"], ["deploy"]):
        subprocess.run(aob + step, check=True, stdout=subprocess.DEVNULL)
    failed = 0
    for name in names:
        script = HERE / f"{name}.py"
        if not script.is_file():
            print(f"{name}: no such benchmark ({script})", file=sys.stderr)
            return 2
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            failed += 1
            print(f"{name}: FAILED\n{result.stderr.strip()[-2000:]}")
        else:
            print(f"{name}: {lines[-1]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
