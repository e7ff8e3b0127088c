"""YAML files and values as edgedistill reads them: safe_load, a key given twice refused, and syntax
errors as one-line user errors."""

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
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice (line {key_node.start_mark.line + 1})",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str):
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml_mapping(path: Path, what: str, example: str) -> dict:
    """A YAML file that must hold a mapping; syntax errors become one-line user errors."""
    try:
        loaded = load_yaml(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise EdgedistillError(f"{what} '{path}' is not valid YAML: {str(exc).splitlines()[0]}", "fix the YAML syntax") from exc
    except UnicodeDecodeError as exc:
        raise EdgedistillError(f"{what} '{path}' is not UTF-8 text ({exc.reason} at byte {exc.start})", "pass a YAML text file saved as UTF-8") from exc
    if not isinstance(loaded, dict):
        raise EdgedistillError(f"{what} '{path}' must hold a mapping", example)
    return loaded
