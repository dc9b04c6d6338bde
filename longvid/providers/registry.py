"""Provider names to implementations. Unknown names are refused with the list of known ones."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InputError
from .base import ProviderCapabilities, VideoProvider
from .preview import PREVIEW_CAPABILITIES, PreviewProvider

_FACTORIES: dict[str, tuple[ProviderCapabilities, Callable[[], VideoProvider]]] = {
    "preview": (PREVIEW_CAPABILITIES, PreviewProvider),
}


def register_provider(name: str, capabilities: ProviderCapabilities, factory: Callable[[], VideoProvider]) -> None:
    """Add a provider under `name` (a plugin, or a test double). Ray workers import the
    registry afresh, so register in a module they import too when running on a cluster."""
    _FACTORIES[name.lower()] = (capabilities, factory)


def available_providers() -> list[str]:
    return sorted(_FACTORIES)


def _lookup(name: str):
    try:
        return _FACTORIES[name]
    except KeyError:
        raise InputError(
            f"unknown provider {name!r}; choose one of: {', '.join(available_providers())}"
        ) from None


def provider_capabilities(name: str) -> ProviderCapabilities:
    return _lookup(name)[0]


def create_provider(name: str) -> VideoProvider:
    return _lookup(name)[1]()
