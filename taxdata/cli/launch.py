"""The installed commands' entry points: each catches a stop signal from its first moment
(:func:`taxdata.signals.catch_early`), then loads its program, so a Ctrl-C while it loads is one
line, not a ``KeyboardInterrupt`` traceback out of an import."""

from __future__ import annotations

import importlib

from taxdata.signals import catch_early


def _launch(module: str, function: str) -> int:
    catch_early()
    return getattr(importlib.import_module(module), function)()


def taxdata() -> int:
    return _launch("taxdata.cli.main", "main")


def update() -> int:
    return _launch("taxdata.cli.commands", "update_main")


def enhanced() -> int:
    return _launch("taxdata.cli.commands", "enhanced_main")


def research() -> int:
    return _launch("taxdata.cli.commands", "research_main")


def raw() -> int:
    return _launch("taxdata.cli.commands", "raw_main")


def demo() -> int:
    return _launch("taxdata.cli.demo", "main")
