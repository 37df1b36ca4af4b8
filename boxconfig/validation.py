"""The file's data against its JSON Schema (jsonschema), every problem as one line with its key path.

jsonschema, not pydantic: the schema stays data (an editor can check a box.yaml against the same document), it
reports every error of a document in one pass with its path, and it installs anywhere: pure Python up to
4.17, and Ubuntu's python3-jsonschema (3.2 on JetPack 5 and 6) works (only APIs 3.2 has are used).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List

from boxconfig.problems import did_you_mean, line, path_of
from runtimes.data_path import describe

_TYPE_WORDS = {"object": "an object (key: value)", "array": "a list", "string": "text", "number": "a number",
               "integer": "a whole number", "boolean": "true or false", "null": "null"}


def schema_problems(data: Any, schema: Dict[str, Any], label: str) -> List[str]:
    """One line per way ``data`` breaks ``schema``, in the file's order."""
    validator = _validator_class()(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(step) for step in e.absolute_path])
    return [text for error in errors for text in _lines(error, label)]


def _validator_class() -> Any:
    """Draft 7 with JSON's own numbers: finite (NaN passes every range check) and whole numbers written as such
    (jsonschema takes 3.0 as an integer, which a frame count is not)."""
    try:
        import jsonschema
    except ImportError:
        from runtimes.errors import UserError

        raise UserError("reading a configuration file needs jsonschema: pip install 'jsonschema>=3.2', or apt "
                        "install python3-jsonschema") from None

    def number(_checker: Any, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)

    def integer(_checker: Any, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    base = jsonschema.Draft7Validator
    checker = base.TYPE_CHECKER.redefine("number", number).redefine("integer", integer)
    return jsonschema.validators.extend(base, type_checker=checker)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond a float's range
        return False


def _lines(error: Any, label: str) -> Iterator[str]:
    at, kind, instance, rule = path_of(label, error.absolute_path), error.validator, error.instance, error.schema
    if kind == "additionalProperties":
        expected = sorted(rule.get("properties", {}))
        for key in instance:
            if key not in rule.get("properties", {}):
                yield line(at.key(key), "unknown key" + did_you_mean(str(key), expected))
    elif kind == "required":
        for key in error.validator_value:
            if key not in instance:
                yield line(at.key(key), "missing; this key is required here")
    elif kind == "type":
        shown = repr(instance) if isinstance(instance, float) and _finite(instance) else describe(instance)
        yield line(at, f"give {_type_words(error.validator_value)} (got {shown})")  # (2.0 is not a whole number)
    else:
        yield line(at, _problem(kind, error, instance, rule))


def _type_words(types: Any) -> str:
    names = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_WORDS.get(name, name) for name in names)


def _problem(kind: str, error: Any, value: Any, rule: Dict[str, Any]) -> str:
    bound = error.validator_value
    got = f" (got {describe(value)})"
    if "x-message" in rule:
        return rule["x-message"] + got
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "more than",
                "exclusiveMaximum": "less than"}[kind]
        return f"give a number {word} {bound:g}{got}"
    if kind in ("minItems", "maxItems", "minProperties", "maxProperties"):
        what = "entries" if kind.endswith("Properties") else "items"
        return f"give {'at least' if kind.startswith('min') else 'at most'} {bound} {what}{got}"
    if kind in ("minLength", "maxLength"):
        return f"give {'at least' if kind == 'minLength' else 'at most'} {bound} characters{got}"
    return f"{error.message[:200]}"
