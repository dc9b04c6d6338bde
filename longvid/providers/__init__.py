"""Video providers behind one protocol, and the registry that names them."""

from .base import (
    GenerationFailed,
    ProviderCapabilities,
    TaskState,
    TaskStatus,
    VideoProvider,
    generate,
)
from .preview import PreviewProvider
from .registry import PROVIDER_SETTINGS, available_providers, create_provider, provider_capabilities, provider_configured, register_provider

__all__ = [
    "PROVIDER_SETTINGS",
    "GenerationFailed",
    "PreviewProvider",
    "ProviderCapabilities",
    "TaskState",
    "TaskStatus",
    "VideoProvider",
    "available_providers",
    "create_provider",
    "generate",
    "provider_capabilities",
    "provider_configured",
    "register_provider",
]
