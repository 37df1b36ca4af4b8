"""The import rule of docs/architecture.md: each layer imports only itself and the layers below it, so no
import runs back up (lazy imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, Optional, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top; a layer may import the layers listed for it (and itself). "model": what a network is and how a
# checkpoint becomes one; "export": graph building for each target; "build": the one build API over both.
ALLOWED: Dict[str, Set[str]] = {
    "runtimes": set(),
    "analytics": {"runtimes"},
    "webview": {"runtimes"},
    "calibration": {"runtimes", "analytics"},  # the tracking metric runs the tracker
    "streams": {"runtimes", "calibration"},
    "recording": {"runtimes", "analytics"},
    "service": {"runtimes"},
    "model": {"runtimes"},
    "export": {"runtimes", "calibration", "model"},
    "quantization": {"runtimes", "calibration", "model", "export"},
    "build": {"runtimes", "calibration", "model", "export", "quantization"},
    "benchmarking": {"runtimes", "calibration", "model", "export", "quantization", "build"},
    "serving": {"runtimes"},
    "apps": {"runtimes", "calibration", "analytics", "webview", "streams", "recording", "service", "model", "export",
             "quantization", "build", "benchmarking", "serving"},
}
MODEL = ("importers", "export.architectures", "export.checkpoint")
BUILD = ("export.build", "export.build_request", "export.build_inputs", "export.build_outputs", "export.build_engine",
         "export.targets")


def layer(module: str) -> Optional[str]:
    """The layer a dotted module name belongs to (None: not the toolkit's, or not layered: tests, benchmarks)."""
    for group, prefixes in (("model", MODEL), ("build", BUILD)):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return group
    top = module.split(".")[0]
    return top if top in ALLOWED else None


def imports(path: Path) -> Iterator[Tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def test_no_import_runs_back_up_the_layers():
    checked, wrong = 0, []
    for path in sorted(ROOT.glob("*/**/*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        own = layer(module)
        if own is None:
            continue
        checked += 1
        for line, name in imports(path):
            other = layer(name)
            if other is not None and other != own and other not in ALLOWED[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {name} ({other})")
    assert checked > 100, "the walk found too few modules to mean anything"
    assert not wrong, "imports that run back up the layers:\n" + "\n".join(wrong)


def test_the_rule_catches_an_import_up(tmp_path):
    """The check itself: a runtime importing the build API, or serving importing export/, is flagged."""
    assert layer("export.targets.onnx_file") == "build" and layer("export.onnx_model") == "export"
    assert layer("importers.base") == "model" and layer("tests.matching") is None
    assert "build" not in ALLOWED["runtimes"] and "export" not in ALLOWED["serving"]
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from export.build import build\n")
    assert [(line, name) for line, name in imports(module) if layer(name) == "build"] == \
        [(2, "export.build"), (2, "export.build.build")]
