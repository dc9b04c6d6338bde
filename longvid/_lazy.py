"""A package's public names, each loading its module on first use (PEP 562), so importing a
light part of the package does not import the heavy ones with it."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """The package's module-level `__getattr__`: `exports` maps each public name to the
    submodule that defines it; a name, once loaded, is kept in `namespace` (the package's
    globals) so the next lookup does not come here."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        namespace[name] = value
        return value

    return __getattr__
