"""Provider names to implementations. Unknown names are refused with the list of known ones.

Capabilities may be registered as a value or as a zero-argument callable: the remote
providers compute theirs from the environment (model, price overrides) when asked, so
`longvid providers` and the pipeline's checks see the configuration of the moment and
need no key. Factories take no arguments and read their configuration (keys included)
from the environment; a missing key is an InputError when the provider is created.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InputError
from .base import ProviderCapabilities, VideoProvider
from .preview import PREVIEW_CAPABILITIES, PreviewProvider

CapabilitiesSource = ProviderCapabilities | Callable[[], ProviderCapabilities]


def _runway_capabilities() -> ProviderCapabilities:
    from .runway import runway_capabilities

    return runway_capabilities()


def _runway() -> VideoProvider:
    from .runway import RunwayProvider

    return RunwayProvider()


def _veo_capabilities() -> ProviderCapabilities:
    from .veo import veo_capabilities

    return veo_capabilities()


def _veo() -> VideoProvider:
    from .veo import VeoProvider

    return VeoProvider()


_FACTORIES: dict[str, tuple[CapabilitiesSource, Callable[[], VideoProvider]]] = {
    "preview": (PREVIEW_CAPABILITIES, PreviewProvider),
    "runway": (_runway_capabilities, _runway),
    "veo": (_veo_capabilities, _veo),
}


# The environment settings that make a provider usable (any one of them), and how to set one.
PROVIDER_SETTINGS: dict[str, tuple[tuple[str, ...], str]] = {
    "runway": (("RUNWAYML_API_SECRET",), "set RUNWAYML_API_SECRET"),
    "veo": (("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT"), "set GOOGLE_API_KEY (Vertex express) or GOOGLE_CLOUD_PROJECT"),
}


def provider_configured(name: str, env: dict[str, str] | None = None) -> bool:
    """Are this provider's credentials in the environment? (Never says what they are.)"""
    import os

    env = os.environ if env is None else env
    needed, _hint = PROVIDER_SETTINGS.get(name, ((), ""))
    return not needed or any(env.get(var, "").strip() for var in needed)


def register_provider(name: str, capabilities: CapabilitiesSource, factory: Callable[[], VideoProvider]) -> None:
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
    capabilities = _lookup(name)[0]
    return capabilities() if callable(capabilities) else capabilities


def create_provider(name: str) -> VideoProvider:
    return _lookup(name)[1]()
