"""The configuration in config/: typed models, one loader, and the sanity checks."""

from shared.config.checks import CHECKS, Check, run_checks
from shared.config.loader import CONFIG_FILES, load_config, validate_config_dir
from shared.config.models import (
    AppConfig,
    PolicyConfig,
    RateLimitsConfig,
    StrategiesConfig,
    UniverseConfig,
)
from shared.config.problems import ConfigError, Problem, Severity

__all__ = [
    "CHECKS",
    "CONFIG_FILES",
    "AppConfig",
    "Check",
    "ConfigError",
    "PolicyConfig",
    "Problem",
    "RateLimitsConfig",
    "Severity",
    "StrategiesConfig",
    "UniverseConfig",
    "load_config",
    "run_checks",
    "validate_config_dir",
]
