"""Schema migrations: ``python -m shared.db.migrate [upgrade|downgrade|current] [REVISION]``.

The compose ``migrate`` init step runs ``upgrade head`` (Alembic's ``alembic upgrade head``)
against ``DATABASE_URL``; services start after it succeeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from pydantic import SecretStr

from shared.db.engine import sqlalchemy_url

__all__ = ["alembic_config", "downgrade", "upgrade"]

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | SecretStr) -> Config:
    """Alembic's config for ``url``; the URL travels as an attribute, not through the ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = sqlalchemy_url(url)
    return config


def upgrade(url: str | SecretStr, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | SecretStr, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def main(argv: list[str] | None = None) -> int:
    from shared.logging import configure_logging
    from shared.settings import ServiceSettings, SettingsError, load_settings

    parser = argparse.ArgumentParser(prog="python -m shared.db.migrate")
    parser.add_argument("action", choices=("upgrade", "downgrade", "current"), nargs="?",
                        default="upgrade")  # fmt: skip
    parser.add_argument("revision", nargs="?", help="default: head (upgrade), -1 (downgrade)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(ServiceSettings, service_name="migrate")
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("migrate", settings.log_level, secrets=settings.secrets())
    if args.action == "upgrade":
        upgrade(settings.database_url, args.revision or "head")
    elif args.action == "downgrade":
        downgrade(settings.database_url, args.revision or "-1")
    else:
        command.current(alembic_config(settings.database_url), verbose=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
