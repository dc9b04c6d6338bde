import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local test clusters only
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_session():
    """One Ray instance for the whole test session (starting Ray costs seconds)."""
    import ray

    from longvid.runtime import ensure_ray

    ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture
def fox_spec():
    from longvid.spec import RenderSpec

    return RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=30, resolution="360p")


def decode_rgb(path: Path):
    """All frames of a video as RGB arrays (test helper; small videos only)."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
