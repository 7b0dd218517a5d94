"""Stream export files: SCDF's `GET /streams/definitions` JSON (HAL-wrapped or a plain list), and the `name =
definition` lines `stream create` takes; read for `stream import`, written by `stream export`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from streams.errors import ConfigError
from streams.scdf.mapping import ScdfStream

HAL_LIST = "streamDefinitionResourceList"


def read_export(path: Path) -> tuple[list[ScdfStream], list[str]]:
    """The streams of an export file and warnings about it (e.g. one page of several); ConfigError says what is
    wrong with a file that cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if text.lstrip().startswith(("{", "[")):
        return _read_json(path, text)
    return _read_lines(path, text), []


def _read_json(path: Path, text: str) -> tuple[list[ScdfStream], list[str]]:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    warnings: list[str] = []
    if isinstance(document, dict) and ("_embedded" in document or "page" in document or "_links" in document):
        entries = (document.get("_embedded") or {}).get(HAL_LIST, [])
        page = document.get("page") or {}
        if isinstance(page, dict) and isinstance(page.get("totalElements"), int) \
                and page["totalElements"] > len(entries):
            warnings.append(f"{path} holds {len(entries)} of {page['totalElements']} streams (one page of SCDF's "
                            f"list): export them all with GET /streams/definitions?size={page['totalElements']}")
    elif isinstance(document, dict) and "name" in document:
        entries = [document]
    else:
        entries = document
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected SCDF's stream list (GET /streams/definitions: "
                          f"_embedded.{HAL_LIST}) or a JSON list of streams")
    return [_stream(path, number, entry) for number, entry in enumerate(entries, 1)], warnings


def _stream(path: Path, number: int, entry: Any) -> ScdfStream:
    where = f"{path}: stream #{number}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not an object with 'name' and 'dslText'")
    name, definition = entry.get("name"), entry.get("dslText") or entry.get("originalDslText")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where} has no 'name'")
    if not isinstance(definition, str) or not definition.strip():
        raise ConfigError(f"{where} ('{name}') has no 'dslText'")
    description = entry.get("description")
    return ScdfStream(name, definition, description if isinstance(description, str) and description else None,
                      _properties(f"{where} ('{name}')", entry.get("deploymentProperties")))


def _properties(where: str, value: Any) -> dict[str, str]:
    """Deployment properties as SCDF gives them: an object, or that object as a JSON string."""
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{where}: deploymentProperties is not a JSON object") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: deploymentProperties is not a JSON object")
    return {str(key): str(item) for key, item in value.items()}


def _read_lines(path: Path, text: str) -> list[ScdfStream]:
    """`name = definition`, one a line; blank lines and `#` comments skipped."""
    streams = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, separator, definition = stripped.partition("=")
        if not separator or not name.strip() or not definition.strip():
            raise ConfigError(f"{path}:{number}: expected 'name = definition' (or SCDF's JSON export), "
                              f"got {stripped!r}")
        streams.append(ScdfStream(name.strip(), definition.strip()))
    return streams


def scdf_document(streams: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """SCDF's `GET /streams/definitions` answer for these streams (name, dslText, status, description…), with each
    one's deployment properties beside it."""
    return {"_embedded": {HAL_LIST: list(streams)},
            "page": {"size": len(streams), "totalElements": len(streams), "totalPages": 1, "number": 0}}


def definition_lines(streams: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{name} = {definition}\n" for name, definition in streams)
