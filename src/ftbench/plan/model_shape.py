"""A model's shape read from its config.json, without torch: what planning checks a cell against."""

from __future__ import annotations

from pathlib import Path

from ftbench.files import read_json


def max_positions(config: str | Path | dict) -> int | None:
    """The longest sequence a model's config.json (a path, or its content) allows (max_position_embeddings,
    or GPT-2's n_positions)."""
    cfg = config if isinstance(config, dict) else read_json(config)
    return cfg.get("max_position_embeddings", cfg.get("n_positions"))
