"""Open-weights video generation through Hugging Face diffusers (the `local` provider).

profiles.py (what each model is), loader.py (where its weights are, loading them),
generation.py (one segment through a pipeline), worker.py (the resident model), pool.py
(where workers live: Ray actors or this process), provider.py (the provider protocol).
Importing this package imports neither torch nor diffusers.
"""

from .profiles import DEFAULT_MODEL, PROFILES, ModelProfile, profile_named
from .provider import LocalProvider, gpu_present, local_capabilities, local_model_state, weights_present

__all__ = ["DEFAULT_MODEL", "PROFILES", "LocalProvider", "ModelProfile", "gpu_present", "local_capabilities", "local_model_state", "profile_named",
           "weights_present"]
