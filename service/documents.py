"""Decoding spec documents (YAML or JSON) with errors that say where: line and column.

Shared by the API (``service.spec.load_document``: a request body) and the client
(``service.client``: a spec file, named in the message), so that a stray colon reads
``study.yaml, line 3, column 9: mapping values are not allowed here`` instead of PyYAML's
``in "<byte string>", line 3, column 9``. Imports neither torch nor the database layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


class DocumentError(ValueError):
    """A document that does not decode; ``str()`` is ``[where, ]line L, column C: problem``."""

    def __init__(self, problem: str, *, line: int | None = None, column: int | None = None):
        self.problem = problem
        self.line = line  # 1-based, None when the parser did not say
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"{where}{problem}")

    def named(self, source: str) -> str:
        """The message with `source` (a file name) in front."""
        return f"{source}, {self}" if self.line is not None else f"{source}: {self}"


def _yaml_error(exc: yaml.YAMLError) -> DocumentError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark is not None:
            start = exc.context_mark  # where the construct that broke began
            problem += f" ({exc.context} at line {start.line + 1}, column {start.column + 1})"
        if mark is not None:
            return DocumentError(problem, line=mark.line + 1, column=mark.column + 1)
        return DocumentError(problem)
    # ReaderError (a control character...) keeps a byte position, not a line
    return DocumentError(str(exc).split("\n")[0])


def decode_yaml(raw: bytes | str) -> Any:
    """YAML -> plain data (``safe_load``: never Python objects); raises DocumentError."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from exc
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def decode_json(raw: bytes | str) -> Any:
    """JSON -> plain data; raises DocumentError."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DocumentError(exc.msg, line=exc.lineno, column=exc.colno) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise DocumentError(str(exc)) from exc


def read_spec_file(path: Path) -> tuple[str, Any, str]:
    """A spec file's (text, decoded data, media type): JSON by its ``.json`` suffix, YAML
    otherwise. A DocumentError names the file: ``spec.yaml, line 3, column 9: ...``."""
    text = path.read_text(encoding="utf-8")
    is_json = path.suffix == ".json"
    try:
        data = decode_json(text) if is_json else decode_yaml(text)
    except DocumentError as exc:
        raise DocumentError(exc.named(str(path))) from None
    return text, data, "application/json" if is_json else "application/yaml"


__all__ = ["DocumentError", "decode_json", "decode_yaml", "read_spec_file"]
