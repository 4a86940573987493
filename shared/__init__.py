"""The common library of the trading system: messages, bus, settings, clock, money, logging.

Import from the submodules (``shared.messages``, ``shared.bus``, ...); each lists its
public names in ``__all__``.
"""
