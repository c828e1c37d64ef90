"""Modules imported on first use rather than at import.

An agent without mutual TLS or end-user tokens never touches ``cryptography``
or PyJWT, which together hold about 10 MB once imported: a fifth of the
agent's memory budget. Modules that use them bind the names to a
``lazy_module`` at run time and import them normally for type checking, so
the code reads as ordinary imports.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for the module ``name``, importing it when an attribute is first read."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attribute)


def lazy_module(name: str) -> Any:
    """``name`` as a ``LazyModule`` (typed Any: callers import the real module for type checking)."""
    return LazyModule(name)
