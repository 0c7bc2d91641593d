"""YAML as the suite's input files are read: safe, and a key given twice in one mapping is an error.

PyYAML keeps the last of two equal keys without a word, so a case file with `methods:` twice lost a
case silently; the YAML spec requires keys to be unique, and this loader holds the files to it. A merge
(`<<: *base`) followed by a key of the mapping's own is an override, as YAML intends, not a duplicate.
"""
from __future__ import annotations

from typing import Any

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping key given twice, naming both lines."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: SafeLoader refuses it itself
                    continue
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping", node.start_mark,
                        f"duplicate key {key!r} (first at line {first.line + 1}); YAML would keep the second "
                        f"and drop the first without a word", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> Any:
    """The document in `text` (yaml.safe_load's), with duplicate keys refused (a yaml.YAMLError whose
    problem_mark is the second key's line)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
