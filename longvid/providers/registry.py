"""Provider names to implementations. Unknown names are refused with the list of known ones.

Every factory and capabilities function takes the `Settings` value (longvid.settings):
capabilities may be registered as a value or as a callable of the settings (the remote
providers compute theirs from the model and price overrides, so `longvid providers` and the
pipeline's checks need no key). A factory always takes the settings, so a test double
registers `lambda settings: Double()`; a missing key is an InputError when the provider is
created.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InputError
from ..settings import Settings
from .base import ProviderCapabilities, VideoProvider
from .preview import PREVIEW_CAPABILITIES, PreviewProvider

CapabilitiesSource = ProviderCapabilities | Callable[[Settings], ProviderCapabilities]
ProviderFactory = Callable[[Settings], VideoProvider]


def _runway_capabilities(settings: Settings) -> ProviderCapabilities:
    from .runway import runway_capabilities

    return runway_capabilities(settings.runway)


def _runway(settings: Settings) -> VideoProvider:
    from .runway import RunwayProvider

    return RunwayProvider(settings.runway)


def _veo_capabilities(settings: Settings) -> ProviderCapabilities:
    from .veo import veo_capabilities

    return veo_capabilities(settings.veo)


def _veo(settings: Settings) -> VideoProvider:
    from .veo import VeoProvider

    return VeoProvider(settings.veo)


def _local_capabilities(settings: Settings) -> ProviderCapabilities:
    from .local import local_capabilities

    return local_capabilities(settings.local)


def _weights_on_the_nodes(settings: Settings) -> bool:
    """On a cluster (RAY_ADDRESS, or a Serve replica or job among several nodes) the weights
    live on the GPU nodes, not where the driver runs: they check them when they load."""
    from .local.pool import on_a_cluster

    return settings.ray_address is not None or on_a_cluster()


def _local(settings: Settings) -> VideoProvider:
    from .local import LocalProvider

    return LocalProvider(settings.local, check_weights=not _weights_on_the_nodes(settings))


def _local_weights(settings: Settings) -> bool:
    from .local import weights_present

    # A cluster driver without the weights is configured: the same rule as _local's check.
    return _weights_on_the_nodes(settings) or weights_present(settings.local) or settings.local.allow_download


_FACTORIES: dict[str, tuple[CapabilitiesSource, ProviderFactory]] = {
    "preview": (PREVIEW_CAPABILITIES, lambda settings: PreviewProvider()),
    "runway": (_runway_capabilities, _runway),
    "veo": (_veo_capabilities, _veo),
    "local": (_local_capabilities, _local),
}


# What makes a provider usable, and how to set it (the CLI shows the hint).
PROVIDER_SETTINGS: dict[str, tuple[Callable[[Settings], bool], str]] = {
    "runway": (lambda s: s.runway.api_secret is not None, "set RUNWAYML_API_SECRET"),
    "veo": (lambda s: s.veo.api_key is not None or bool(s.veo.project),
            "set GOOGLE_API_KEY (Vertex express) or GOOGLE_CLOUD_PROJECT"),
    "local": (_local_weights, "weights: pass --model-dir DIR (LONGVID_LOCAL_MODEL_DIR) or put the model in the "
                              "Hugging Face cache; --allow-download fetches it"),
}


def provider_configured(name: str, settings: Settings) -> bool:
    """Are this provider's credentials configured? (Never says what they are.)"""
    configured = PROVIDER_SETTINGS.get(name)
    return configured is None or configured[0](settings)


def register_provider(name: str, capabilities: CapabilitiesSource, factory: ProviderFactory) -> None:
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


def provider_capabilities(name: str, settings: Settings) -> ProviderCapabilities:
    capabilities = _lookup(name)[0]
    return capabilities(settings) if callable(capabilities) else capabilities


def create_provider(name: str, settings: Settings) -> VideoProvider:
    return _lookup(name)[1](settings)
