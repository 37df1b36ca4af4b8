"""Install tensorrt-stubs for mypy into .cache/typestubs (never into the environment, never into git).

The latest stubs (10.13.0.35.1) pin a tensorrt wheel whose CUDA libraries PyPI does not serve, so they are
installed with --no-deps; and their generated .pyi files contain two kinds of Python syntax errors that stop
mypy: parameters named ``in`` (a keyword) and a parameter without a default after ones with defaults. This
script repairs the installed copy: ``in`` becomes ``in_`` and such parameters get ``= ...``.

    python .ci/tensorrt_stubs.py      # then: MYPYPATH=.cache/typestubs mypy ...
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

VERSION = "10.13.0.35.1"
TARGET = Path(__file__).resolve().parents[1] / ".cache" / "typestubs"


def repair(text: str) -> str:
    text = re.sub(r"\bin: ", "in_: ", text)
    lines = text.splitlines()
    for _ in range(100):
        try:
            ast.parse("\n".join(lines))
            return "\n".join(lines) + "\n"
        except SyntaxError as exc:
            if exc.lineno is None or "non-default argument" not in str(exc.msg):
                raise
            line = lines[exc.lineno - 1]
            head, sep, tail = line.partition("(")
            params = tail.rsplit(")", 1)
            parts = params[0].split(", ")
            seen_default = False
            for i, part in enumerate(parts):
                if "=" in part:
                    seen_default = True
                elif seen_default and ":" in part and not part.startswith("*"):
                    parts[i] = part + " = ..."
            lines[exc.lineno - 1] = head + sep + ", ".join(parts) + ")" + params[1]
    raise RuntimeError("could not repair the stubs")


def main() -> int:
    marker = TARGET / f".repaired-{VERSION}"
    if marker.is_file():
        return 0
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", str(TARGET),
                    f"tensorrt-stubs=={VERSION}"], check=True)
    fixed = 0
    for stub in TARGET.rglob("*.pyi"):
        text = stub.read_text(encoding="utf-8")
        repaired = repair(text)
        if repaired != text + ("" if text.endswith("\n") else "\n"):
            stub.write_text(repaired, encoding="utf-8")
            fixed += 1
    marker.write_text("ok\n")
    print(f"tensorrt-stubs {VERSION} in {TARGET} ({fixed} files repaired)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
