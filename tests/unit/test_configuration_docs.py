"""docs/configuration.md stays true to the models and the checks."""

from pathlib import Path

from pydantic import BaseModel

from shared.config import CHECKS
from shared.config.models import (
    BreakoutParams,
    ChannelBudget,
    EmaCrossParams,
    EmaCrossStrategy,
    ExecutionPolicy,
    MeanReversionParams,
    ProductEntry,
    RiskPolicy,
    TierSlippage,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
DOCUMENTED: dict[str, type[BaseModel]] = {
    "risk.": RiskPolicy,
    "execution.": ExecutionPolicy,
    "tiers.<tier>.": TierSlippage,
    "products[].": ProductEntry,
    "<channel>.": ChannelBudget,
    "strategies[].params.": EmaCrossParams,
}


def test_every_key_of_every_file_is_documented():
    missing = [
        f"{prefix}{name}"
        for prefix, model in DOCUMENTED.items()
        for name in model.model_fields
        if f"`{prefix}{name}`" not in DOC
    ]
    missing += [
        name
        for name in EmaCrossStrategy.model_fields
        if name != "params" and f"`strategies[].{name}`" not in DOC
    ]
    for model in (MeanReversionParams, BreakoutParams):
        missing += [
            name for name in model.model_fields if f"`strategies[].params.{name}`" not in DOC
        ]
    assert missing == []


def test_every_check_is_documented_with_its_formula_and_reason():
    for check in CHECKS:
        assert f"| `{check.id}` | `{check.formula}` | {check.reason} |" in DOC, check.id
