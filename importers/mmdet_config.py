"""MMDetection's Python config files read as data, never executed.

A config is a module of assignments (``model = dict(...)``, ``_base_ = [...]``). :func:`read_config` walks
its syntax tree with :mod:`ast` and evaluates only literals, ``dict(...)`` calls with keyword arguments,
names assigned earlier in the file, subscripts of those (``img_norm_cfg['mean']``), MMEngine's
``{{_base_.name}}`` references to a value of the ``_base_`` files, and arithmetic on numbers and strings;
anything else (an import, another call, a lambda, an attribute) is code, and the file
is refused in one line naming where. ``_base_`` files are read the same way, relative to the file, and
merged beneath it as MMEngine merges them (dicts key by key, the file's own values winning, ``_delete_``
replacing).
"""

from __future__ import annotations

import ast
import operator
from pathlib import Path
from typing import Any, Callable, Dict, List

from runtimes.errors import UserError

_OPS: Dict[type, Callable[[Any, Any], Any]] = {ast.Add: operator.add, ast.Sub: operator.sub,
                                               ast.Mult: operator.mul, ast.Div: operator.truediv}
MAX_DEPTH = 8  # _base_ chains deeper than MMDetection's own (3) are a loop or not a config


class _Evaluator:
    def __init__(self, path: Path, base: Dict[str, Any]) -> None:
        self.path = path
        self.base = base  # the merged _base_ files, for {{_base_.name}}
        self.names: Dict[str, Any] = {}

    def refuse(self, node: ast.AST, what: str) -> UserError:
        return UserError(f"{self.path}:{getattr(node, 'lineno', 0)}: the config holds code ({what}); it is read "
                         "as data, never executed: give a config of literal values (dict(...), lists, numbers)")

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
            return {self.value(k): self.value(v) for k, v in zip(node.keys, node.values) if k is not None}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" \
                and not node.args and all(k.arg for k in node.keywords):
            return {k.arg: self.value(k.value) for k in node.keywords}
        if isinstance(node, ast.Name) and node.id in self.names:
            return self.names[node.id]
        if isinstance(node, ast.Subscript):
            try:
                return self.value(node.value)[self.value(node.slice)]
            except (KeyError, IndexError, TypeError):
                raise self.refuse(node, "a subscript of no literal value") from None
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            try:
                return _OPS[type(node.op)](self.value(node.left), self.value(node.right))
            except (TypeError, ZeroDivisionError):
                raise self.refuse(node, "arithmetic on values that are not numbers or strings") from None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.value(node.operand)
        if isinstance(node, ast.Set) and len(node.elts) == 1 and isinstance(node.elts[0], ast.Set):
            return self.base_reference(node.elts[0])
        raise self.refuse(node, type(node).__name__)

    def base_reference(self, node: ast.Set) -> Any:
        """MMEngine's ``{{_base_.a.b}}``: the value at a.b of the _base_ files (MMEngine substitutes it in the
        text before parsing; here it is looked up, never evaluated)."""
        keys: List[str] = []
        inner = node.elts[0] if len(node.elts) == 1 else None
        while isinstance(inner, ast.Attribute):
            keys.insert(0, inner.attr)
            inner = inner.value
        if not (isinstance(inner, ast.Name) and inner.id == "_base_" and keys):
            raise self.refuse(node, "a set")
        found = find(self.base, *keys)
        if found is None:
            raise UserError(f"{self.path}:{node.lineno}: {{{{_base_.{'.'.join(keys)}}}}} names nothing in its _base_ "
                            "files; check the config's _base_ list")
        return found

    def module(self, tree: ast.Module) -> Dict[str, Any]:
        for statement in tree.body:
            if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                continue  # a docstring
            if not (isinstance(statement, ast.Assign) and all(isinstance(t, ast.Name) for t in statement.targets)):
                raise self.refuse(statement, type(statement).__name__.lower())
            value = self.value(statement.value)
            for target in statement.targets:
                self.names[target.id] = value  # type: ignore[attr-defined]
        return self.names


def merge(base: Dict[str, Any], child: Dict[str, Any]) -> Dict[str, Any]:
    """MMEngine's merge: ``child`` over ``base``, dicts key by key unless the child says ``_delete_``."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not value.get("_delete_"):
            out[key] = merge(out[key], value)
        else:
            out[key] = {k: v for k, v in value.items() if k != "_delete_"} if isinstance(value, dict) else value
    return out


def read_config(path: Path, depth: int = 0) -> Dict[str, Any]:
    """The names a config file assigns, its ``_base_`` files merged beneath; UserError for code or a file
    that cannot be read."""
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as an MMDetection config ({str(exc).splitlines()[0][:120]}); "
                        "check the path given to --config") from None
    # _base_ first: the file's {{_base_.name}} references read the merged bases.
    declared = [s for s in tree.body if isinstance(s, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "_base_" for t in s.targets)]
    bases = _Evaluator(path, {}).value(declared[-1].value) if declared else []
    merged: Dict[str, Any] = {}
    if depth > MAX_DEPTH and bases:
        raise UserError(f"{path}: _base_ files nest more than {MAX_DEPTH} deep (a loop?)")
    for base in [bases] if isinstance(bases, str) else list(bases):
        merged = merge(merged, read_config(path.parent / str(base), depth + 1))
    names = _Evaluator(path, merged).module(tree)
    names.pop("_base_", None)
    return merge(merged, names)


def find(config: Dict[str, Any], *keys: str) -> Any:
    """``config[k1][k2]...``, None where a key is missing."""
    node: Any = config
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def first(config: Dict[str, Any], *paths: List[str]) -> Any:
    """The value at the first of ``paths`` that the config has."""
    for path in paths:
        found = find(config, *path)
        if found is not None:
            return found
    return None
