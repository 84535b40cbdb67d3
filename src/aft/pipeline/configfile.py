"""Config files read strictly: a YAML mistake is reported with its file, line and column.

Snakemake reads `--configfile` files itself, before the workflow's code runs, and its message for a
YAML error names neither the file nor the line ("Config file is not valid JSON or YAML"). The workflow
reads every config file again through `read_config_files` (the default one before Snakemake does), and
`python -m aft.tools.check_config FILE...` does the same for files Snakemake could not read. Stricter
than Snakemake in one way: a key given twice in one mapping is refused (YAML keeps the last one
silently, so a second `inference:` block would drop the first without a word).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml


class ConfigFileError(ValueError):
    """A config file that cannot be read: its path, line and what is wrong."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated within one mapping, naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (lines {seen[key]} and {line}); YAML would keep only the"
                    " last",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _location(path: Path, err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    if mark is None:
        return str(path)
    return f"{path}, line {mark.line + 1}, column {mark.column + 1}"


def read_config_file(path: str | Path) -> dict:
    """One config file as a dict; ConfigFileError names the file (and line) when it is missing, not
    UTF-8, not YAML, empty, or not a mapping of keys at the top level."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"config file {path} not found") from None
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigFileError(f"{path}, line {line}: not UTF-8 (byte {err.start})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        problem = " ".join(p for p in (err.context, err.problem) if p)
        raise ConfigFileError(f"{_location(path, err)}: {problem}") from None
    except yaml.YAMLError as err:
        raise ConfigFileError(f"{path}: {err}") from None
    if data is None:
        raise ConfigFileError(f"{path} is empty: a config file is a mapping of keys (e.g. `inference:`)")
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{path}: the top level is a {type(data).__name__}; a config file is a mapping of keys"
            " (e.g. `inference:`), an overlay holds only the keys it changes"
        )
    return data


def merge(base: dict, overlay: dict) -> dict:
    """`overlay` stacked on `base` as Snakemake stacks config files: mappings merge key by key, any
    other value replaces."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config_files(paths: Iterable[str | Path]) -> dict:
    """A config and its overlays, each read strictly, stacked in order."""
    out: dict = {}
    for path in paths:
        out = merge(out, read_config_file(path))
    return out
