"""A copy of ``config/`` for a stack under test: its own strategies, risk limits and products."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from deploy.local.compose import ROOT


def trading_config(
    parent: Path, strategies: Mapping[str, Any], risk: Mapping[str, Any], products: Iterable[str]
) -> Path:
    """``parent/config``: the shipped config with ``strategies``, the risk limits updated
    with ``risk`` and the universe cut down to ``products``."""
    target = parent / "config"
    shutil.copytree(ROOT / "config", target)
    (target / "strategies.yaml").write_text(yaml.safe_dump(dict(strategies)))
    policy = yaml.safe_load((target / "policy.yaml").read_text())
    policy["risk"].update(risk)
    (target / "policy.yaml").write_text(yaml.safe_dump(policy))
    wanted = set(products)
    universe = yaml.safe_load((target / "universe.yaml").read_text())
    universe["products"] = [p for p in universe["products"] if p["product_id"] in wanted]
    (target / "universe.yaml").write_text(yaml.safe_dump(universe))
    return target
