"""YAML files and values as edgedistill reads them: safe_load, a key given twice refused, integers
that keep the text they were written as (WrittenInt), and syntax errors as one-line user errors."""

from __future__ import annotations

from pathlib import Path

import yaml

from .errors import EdgedistillError


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error: PyYAML keeps the last silently, so a
    second `distill:` section in a long recipe dropped the first without a word."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged keys may be overridden, as YAML allows
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # a list or mapping as a key: SafeLoader's own error, one line
                break
            if repeated:
                # no mark: the text names the line already (yaml_problem would repeat it)
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep)


class WrittenInt(int):
    """An integer YAML 1.1 read from text that does not spell it (2024_01 is 202401, 0755 the octal 493, 1:8 the
    base-60 68): `text` keeps what was written, so a text setting keeps it and a list or number setting can refuse it."""

    text: str


def _construct_int(loader, node):
    value = yaml.SafeLoader.construct_yaml_int(loader, node)
    text = loader.construct_scalar(node)
    if str(value) == text:
        return value
    written = WrittenInt(value)
    written.text = text
    return written


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def load_yaml(text: str):
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _where(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error as one line that keeps where it is: its message's first line ("while scanning a
    quoted scalar") said neither what was wrong nor where."""
    problem = getattr(exc, "problem", None)
    if not problem:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    mark, context, context_mark = getattr(exc, "problem_mark", None), getattr(exc, "context", None), getattr(exc, "context_mark", None)
    text = f"{problem} at {_where(mark)}" if mark is not None else problem
    if context:
        started = f" (from {_where(context_mark)})" if context_mark is not None and (mark is None or context_mark.line != mark.line) else ""
        text += f", {context}{started}"
    return text


def read_yaml_mapping(path: Path, what: str, example: str) -> dict:
    """A YAML file that must hold a mapping; syntax errors become one-line user errors."""
    try:
        loaded = load_yaml(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise EdgedistillError(f"{what} '{path}' is not valid YAML: {yaml_problem(exc)}", "fix the YAML syntax there") from exc
    except UnicodeDecodeError as exc:
        raise EdgedistillError(f"{what} '{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})", "pass a YAML text file saved as UTF-8") from exc
    if not isinstance(loaded, dict):
        raise EdgedistillError(f"{what} '{path}' must hold a mapping", example)
    return loaded
