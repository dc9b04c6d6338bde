"""longvid's configuration as one frozen value, read from the environment once at each edge.

The edges (the CLI, the batch job, a Serve replica, `longvid.render()`) call
`Settings.from_env()` and pass the value down; nothing below them reads `os.environ`. Ray
workers get it as a task argument: secrets are `SecretStr`, so a repr, a log line or
`model_dump_json()` shows '**********', while pickling (to a worker) keeps the value.

Plain pydantic models with a `from_env(environ)` classmethod rather than pydantic-settings:
several variables do not map one-to-one onto fields (GOOGLE_API_KEY before GEMINI_API_KEY,
one LONGVID_POLL_INTERVAL_S for every provider, LONGVID_MAX_CONCURRENT_<PROVIDER> for any
provider name, JSON price tables), tests pass a plain dict, and every bad value becomes one
InputError that names its variable.

The variable names are the ones README.md documents.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .errors import InputError

GOOGLE_KEY_ENVS = ("GOOGLE_API_KEY", "GEMINI_API_KEY")  # the first one set wins, as in google-genai

RUNWAY_DEFAULT_BASE_URL = "https://api.dev.runwayml.com"
RUNWAY_DEFAULT_MODEL = "gen4.5"
VEO_DEFAULT_MODEL = "veo-3.1-fast-generate-preview"
VEO_DEFAULT_LOCATION = "us-central1"
GEMINI_DEFAULT_MODEL = "gemini-3.8-flash"
GEMINI_DEFAULT_TTS_MODEL = "gemini-3.8-flash-tts"
DEFAULT_BREAKER_OPEN_S = 30.0  # how long an open breaker refuses calls before a probe
DEFAULT_RUN_LOCK_TTL_S = 90.0
DEFAULT_S3_PART_MB = 8.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunwaySettings(_Frozen):
    api_secret: SecretStr | None = None  # RUNWAYML_API_SECRET
    base_url: str = RUNWAY_DEFAULT_BASE_URL  # RUNWAYML_BASE_URL
    model: str = RUNWAY_DEFAULT_MODEL  # LONGVID_RUNWAY_MODEL
    prices: dict[str, float] = Field(default_factory=dict)  # LONGVID_RUNWAY_PRICES: credits per second by model
    poll_interval_s: float = 5.0  # LONGVID_POLL_INTERVAL_S


class VeoSettings(_Frozen):
    api_key: SecretStr | None = None  # GOOGLE_API_KEY, else GEMINI_API_KEY (Vertex express mode)
    project: str | None = None  # GOOGLE_CLOUD_PROJECT (project mode; wins over a key, as in the SDK)
    # GOOGLE_APPLICATION_CREDENTIALS: the service-account file project mode loads, on the driver
    # and on workers of other nodes alike (carried as a value: a worker's environment lacks it).
    credentials_file: str | None = None
    location: str = VEO_DEFAULT_LOCATION  # GOOGLE_CLOUD_LOCATION
    base_url: str | None = None  # GOOGLE_VERTEX_BASE_URL (a proxy or a fake)
    model: str = VEO_DEFAULT_MODEL  # LONGVID_VEO_MODEL
    prices: dict[str, float] = Field(default_factory=dict)  # LONGVID_VEO_PRICES: USD per second by model
    poll_interval_s: float = 10.0  # LONGVID_POLL_INTERVAL_S


class GeminiSettings(_Frozen):
    api_key: SecretStr | None = None  # GOOGLE_API_KEY, else GEMINI_API_KEY
    key_source: str | None = None  # which of the two it came from (a name, never the value)
    base_url: str | None = None  # GOOGLE_GEMINI_BASE_URL
    model: str = GEMINI_DEFAULT_MODEL  # LONGVID_GEMINI_MODEL


class PollingSettings(_Frozen):
    task_timeout_s: float = 1800.0  # LONGVID_TASK_TIMEOUT_S: how long a worker waits for one provider task


class GateSettings(_Frozen):
    # LONGVID_MAX_CONCURRENT_<PROVIDER>, by lower-case provider name; 0 means no limit.
    max_concurrent: dict[str, int] = Field(default_factory=dict)
    breaker_open_s: float = DEFAULT_BREAKER_OPEN_S  # LONGVID_BREAKER_OPEN_S


class StoreSettings(_Frozen):
    location: str = "runs"  # LONGVID_STORE: a folder or s3://bucket/prefix
    s3_part_mb: float = DEFAULT_S3_PART_MB  # LONGVID_S3_PART_MB: multipart size, tune for slow links
    run_lock_ttl_s: float = DEFAULT_RUN_LOCK_TTL_S  # LONGVID_RUN_LOCK_TTL_S


class ClipSettings(_Frozen):
    model: str | None = None  # LONGVID_CLIP_MODEL (None: the judge's default)
    checkpoint: Path | None = None  # LONGVID_CLIP_CHECKPOINT


class LocalModelSettings(_Frozen):
    """Open-weights generation through diffusers (the `local` provider)."""

    model: str = "ltx-video"  # LONGVID_LOCAL_MODEL: a profile key (longvid.providers.local.profiles)
    model_dir: Path | None = None  # LONGVID_LOCAL_MODEL_DIR or --model-dir: a diffusers model folder
    allow_download: bool = False  # --allow-download: fetch the weights into the Hugging Face cache
    precision: str | None = None  # LONGVID_LOCAL_PRECISION: bf16/fp16/fp32 (None: the profile's; fp32 on CPU)
    device: str = "auto"  # LONGVID_LOCAL_DEVICE: auto (a GPU when the cluster has one), cuda, cpu
    cpu_offload: bool = False  # LONGVID_LOCAL_CPU_OFFLOAD=1: model CPU offload (a 24 GB GPU at 720p)
    vae_tiling: bool = True  # LONGVID_LOCAL_VAE_TILING=0 turns VAE tiling and slicing off
    steps: int | None = None  # LONGVID_LOCAL_STEPS (None: the profile's default)
    generate_height: int | None = None  # LONGVID_LOCAL_HEIGHT: generate at this height, scale to the video's
    workers: int = 1  # LONGVID_LOCAL_WORKERS: resident model workers (one GPU each)
    gpu_hour_usd: float = 0.80  # LONGVID_GPU_HOUR_USD: what one GPU-hour costs (an L4 on demand, about)
    # LONGVID_LOCAL_PLACEMENT_TIMEOUT_S: how long a segment waits for Ray to place its model
    # worker before failing with what it asked for (an autoscaler brings a GPU node in minutes)
    placement_timeout_s: float = 900.0
    # LONGVID_LOCAL_MAX_VRAM_GB: the largest GPU memory a node has (the deploy files set it):
    # a render whose segments would need more is refused at check time (None: not checked)
    max_vram_gb: float | None = None


class SpeechSettings(_Frozen):
    tts_model: str = GEMINI_DEFAULT_TTS_MODEL  # LONGVID_TTS_MODEL: the Gemini speech model
    piper_voices: Path | None = None  # LONGVID_PIPER_VOICES: the folder of Piper voices (.onnx + .onnx.json)


class Settings(_Frozen):
    runway: RunwaySettings = Field(default_factory=RunwaySettings)
    veo: VeoSettings = Field(default_factory=VeoSettings)
    gemini: GeminiSettings = Field(default_factory=GeminiSettings)
    polling: PollingSettings = Field(default_factory=PollingSettings)
    gates: GateSettings = Field(default_factory=GateSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    clip: ClipSettings = Field(default_factory=ClipSettings)
    local: LocalModelSettings = Field(default_factory=LocalModelSettings)
    ray_address: str | None = None  # RAY_ADDRESS (None: start Ray in-process)
    debug: bool = False  # LONGVID_DEBUG: tracebacks in the CLI
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    # LONGVID_AUTOSCALING: 1 (the cluster grows with demand: keep requests whole, queue them as
    # its demand), 0 (what it has now is all it has), auto/unset (None: guess from a CPU-less head)
    autoscaling: bool | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (default: this process's environment). A bad value is
        an InputError naming its variable."""
        env = _Env(os.environ if environ is None else environ)
        poll = env.number("LONGVID_POLL_INTERVAL_S")
        google_key = google_api_key(env.raw)
        return cls(
            runway=RunwaySettings(
                api_secret=env.secret("RUNWAYML_API_SECRET"),
                base_url=(env.text("RUNWAYML_BASE_URL") or RUNWAY_DEFAULT_BASE_URL).rstrip("/"),
                model=env.text("LONGVID_RUNWAY_MODEL") or RUNWAY_DEFAULT_MODEL,
                prices=parse_prices("LONGVID_RUNWAY_PRICES", env.text("LONGVID_RUNWAY_PRICES"),
                                    '{"gen4.5": 12}', "credits per second"),
                **({"poll_interval_s": poll} if poll is not None else {}),
            ),
            veo=VeoSettings(
                api_key=SecretStr(google_key[0]) if google_key else None,
                project=env.text("GOOGLE_CLOUD_PROJECT"),
                credentials_file=env.text("GOOGLE_APPLICATION_CREDENTIALS"),
                location=env.text("GOOGLE_CLOUD_LOCATION") or VEO_DEFAULT_LOCATION,
                base_url=(env.text("GOOGLE_VERTEX_BASE_URL") or "").rstrip("/") or None,
                model=env.text("LONGVID_VEO_MODEL") or VEO_DEFAULT_MODEL,
                prices=parse_prices("LONGVID_VEO_PRICES", env.text("LONGVID_VEO_PRICES"),
                                    f'{{"{VEO_DEFAULT_MODEL}": 0.15}}', "USD per second"),
                **({"poll_interval_s": poll} if poll is not None else {}),
            ),
            gemini=GeminiSettings(
                api_key=SecretStr(google_key[0]) if google_key else None,
                key_source=google_key[1] if google_key else None,
                base_url=env.text("GOOGLE_GEMINI_BASE_URL"),
                model=(env.text("LONGVID_GEMINI_MODEL") or GEMINI_DEFAULT_MODEL).removeprefix("models/"),
            ),
            polling=PollingSettings(**env.numbers(task_timeout_s="LONGVID_TASK_TIMEOUT_S")),
            gates=GateSettings(
                max_concurrent=env.limits("LONGVID_MAX_CONCURRENT_"),
                **env.numbers(breaker_open_s="LONGVID_BREAKER_OPEN_S"),
            ),
            store=StoreSettings(
                location=env.text("LONGVID_STORE") or "runs",
                **env.numbers(s3_part_mb="LONGVID_S3_PART_MB", run_lock_ttl_s="LONGVID_RUN_LOCK_TTL_S"),
            ),
            clip=ClipSettings(
                model=env.text("LONGVID_CLIP_MODEL"),
                checkpoint=Path(env.text("LONGVID_CLIP_CHECKPOINT")) if env.text("LONGVID_CLIP_CHECKPOINT") else None,
            ),
            local=local_model_settings(env),
            ray_address=env.text("RAY_ADDRESS"),
            debug=bool(env.text("LONGVID_DEBUG")),
            speech=SpeechSettings(
                tts_model=(env.text("LONGVID_TTS_MODEL") or GEMINI_DEFAULT_TTS_MODEL).removeprefix("models/"),
                piper_voices=Path(env.text("LONGVID_PIPER_VOICES")) if env.text("LONGVID_PIPER_VOICES") else None,
            ),
            autoscaling=autoscaling_setting(env.text("LONGVID_AUTOSCALING")),
        )

    def for_provider(self, provider: str) -> Settings:
        """These settings with only `provider`'s credentials: what a Ray task that polls and
        downloads for it needs, so a segment task never carries another service's key."""
        keep = {"runway": "runway", "veo": "veo"}.get(provider)
        cleared = {name: type(getattr(self, name))() for name in ("runway", "veo", "gemini") if name != keep}
        return self.model_copy(update=cleared)

    def account(self, provider: str) -> dict[str, str]:
        """What identifies a provider account and endpoint (keys, project, base URL), not
        longvid's own tuning. For digests only (see `account_digest`): never print it."""
        if provider == "runway":
            return {"key": _reveal(self.runway.api_secret), "base_url": self.runway.base_url}
        if provider == "veo":
            return {"key": _reveal(self.veo.api_key), "project": self.veo.project or "",
                    "location": self.veo.location if self.veo.project else "", "base_url": self.veo.base_url or ""}
        return {}


def autoscaling_setting(value: str | None) -> bool | None:
    """LONGVID_AUTOSCALING: True, False, or None for auto."""
    choices = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "auto": None}
    if value is None:
        return None
    if value.strip().lower() not in choices:
        raise InputError(f"LONGVID_AUTOSCALING must be 1, 0 or auto (got {value!r})")
    return choices[value.strip().lower()]


def with_local_model(settings: Settings, model_dir: Path | None = None, allow_download: bool = False) -> Settings:
    """The CLI's --model-dir and --allow-download over the environment's local-model settings."""
    changes: dict = {}
    if model_dir is not None:
        changes["model_dir"] = model_dir
    if allow_download:
        changes["allow_download"] = True
    return settings.model_copy(update={"local": settings.local.model_copy(update=changes)}) if changes else settings


def local_model_settings(env: _Env) -> LocalModelSettings:
    precision = env.text("LONGVID_LOCAL_PRECISION")
    if precision is not None and precision not in ("bf16", "fp16", "fp32"):
        raise InputError(f"LONGVID_LOCAL_PRECISION must be bf16, fp16 or fp32 (got {precision!r})")
    device = env.text("LONGVID_LOCAL_DEVICE") or "auto"
    if device not in ("auto", "cuda", "cpu"):
        raise InputError(f"LONGVID_LOCAL_DEVICE must be auto, cuda or cpu (got {device!r})")
    whole = {field: int(value) for field, value in env.numbers(steps="LONGVID_LOCAL_STEPS", generate_height="LONGVID_LOCAL_HEIGHT",
                                                               workers="LONGVID_LOCAL_WORKERS").items()}
    price = env.text("LONGVID_GPU_HOUR_USD")
    try:
        gpu_hour = float(price) if price is not None else None
        if gpu_hour is not None and not 0 <= gpu_hour < float("inf"):
            raise ValueError
    except ValueError:
        raise InputError(f"LONGVID_GPU_HOUR_USD must be a price in USD, 0 or more (got {price!r})") from None
    return LocalModelSettings(
        model=env.text("LONGVID_LOCAL_MODEL") or "ltx-video",
        model_dir=Path(env.text("LONGVID_LOCAL_MODEL_DIR")) if env.text("LONGVID_LOCAL_MODEL_DIR") else None,
        precision=precision, device=device,
        cpu_offload=(env.text("LONGVID_LOCAL_CPU_OFFLOAD") or "0") not in ("0", "false", "no"),
        vae_tiling=(env.text("LONGVID_LOCAL_VAE_TILING") or "1") not in ("0", "false", "no"),
        **whole, **({"gpu_hour_usd": gpu_hour} if gpu_hour is not None else {}),
        **env.numbers(placement_timeout_s="LONGVID_LOCAL_PLACEMENT_TIMEOUT_S", max_vram_gb="LONGVID_LOCAL_MAX_VRAM_GB"),
    )


def account_digest(account: Mapping[str, str]) -> str:
    """A short, stable digest of an account's settings: the same account always gives the
    same digest, and the digest does not reveal the key."""
    return hashlib.sha256(repr(sorted(account.items())).encode()).hexdigest()[:12]


def google_api_key(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(key, the variable it came from): GOOGLE_API_KEY first, else GEMINI_API_KEY; None if
    neither is set. The one place both Veo and the Gemini planner look the key up."""
    for name in GOOGLE_KEY_ENVS:
        value = (environ.get(name) or "").strip()
        if value:
            return value, name
    return None


def parse_prices(variable: str, raw: str | None, example: str, unit: str) -> dict[str, float]:
    """A price override table (JSON object of non-negative numbers by model), or an
    InputError naming `variable`."""
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
        if not isinstance(parsed, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in parsed.values()
        ):
            raise ValueError
    except ValueError:
        raise InputError(f"{variable} must be a JSON object of {unit} by model, e.g. {example}") from None
    return {str(k): float(v) for k, v in parsed.items()}


def _reveal(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""


class _Env:
    """Typed reads of one environment mapping; a bad value names its variable."""

    def __init__(self, raw: Mapping[str, str]):
        self.raw = raw

    def text(self, name: str) -> str | None:
        value = (self.raw.get(name) or "").strip()
        return value or None

    def secret(self, name: str) -> SecretStr | None:
        value = self.text(name)
        return SecretStr(value) if value else None

    def number(self, name: str) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise InputError(f"{name} must be a number of seconds, megabytes or similar (got {value!r})") from None
        if not number > 0 or number == float("inf"):
            raise InputError(f"{name} must be a positive number (got {value!r})")
        return number

    def numbers(self, **fields: str) -> dict[str, float]:
        """{field: value} for the variables that are set (unset ones keep the field's default)."""
        values = {field: self.number(name) for field, name in fields.items()}
        return {field: value for field, value in values.items() if value is not None}

    def limits(self, prefix: str) -> dict[str, int]:
        """LONGVID_MAX_CONCURRENT_<PROVIDER>=n for every provider set (0: no limit)."""
        limits = {}
        for name in self.raw:
            if not name.startswith(prefix) or self.text(name) is None:
                continue
            value = self.text(name)
            try:
                limit = int(value)
            except ValueError:
                raise InputError(f"{name} must be a whole number of tasks, 0 for no limit (got {value!r})") from None
            if limit < 0:
                raise InputError(f"{name} must be 0 or more (got {value!r})")
            limits[name[len(prefix):].lower()] = limit
        return limits
