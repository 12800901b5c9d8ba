"""[train] job files for the training tests, written from plain dicts (no text surgery)."""

from __future__ import annotations

import json
from typing import Any


def train_toml(train: dict[str, Any], name: str = "train-test") -> str:
    """A job file with this ``[train]`` table (JSON literals are valid TOML for the strings,
    numbers, booleans and lists used here; sub-tables and the layer list become TOML tables)."""
    lines = ["[pipeline]", f"name = {json.dumps(name)}", "", "[train]"]
    model = train.get("model")
    tables = {k: v for k, v in train.items() if isinstance(v, dict)}
    for k, v in train.items():
        if k not in tables and not (k == "model" and isinstance(v, list)):
            lines.append(f"{k} = {json.dumps(v)}")
    for k, t in tables.items():
        lines += ["", f"[train.{k}]"] + [f"{a} = {json.dumps(b)}" for a, b in t.items()]
    if isinstance(model, list):
        for layer in model:
            lines += ["", "[[train.model]]"] + [f"{a} = {json.dumps(b)}"
                                                 for a, b in layer.items()]
    return "\n".join(lines) + "\n"
