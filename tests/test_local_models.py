"""The local provider (open-weights models through diffusers), without Ray: profiles and the
frame rule, the loader and its clear errors, the resident worker, cost, resources, CLI."""

import io
import json
from pathlib import Path

import numpy as np
import pytest

from longvid.cli import main
from longvid.errors import InputError
from longvid.planning.segmentation import DurationRule, segment_storyboard
from longvid.providers import create_provider, provider_capabilities
from longvid.providers.base import Conditioning, conditioning_pngs, from_wire, to_wire
from longvid.providers.local.generation import plan_generation
from longvid.providers.local.loader import load_spec
from longvid.providers.local.profiles import LTX_VIDEO, WAN_TI2V_5B
from longvid.providers.local.worker import ModelWorker
from longvid.runtime.resources import VRAM_RESOURCE, estimate, model_worker_request
from longvid.settings import LocalModelSettings, Settings
from longvid.spec import QualityTier, RenderSpec, Scene, SegmentJob


def _job(index=0, frames=30, tail=6, fps=24, width=640, height=360, duration=None) -> SegmentJob:
    rule = LTX_VIDEO.durations()
    return SegmentJob(index=index, scene_index=0, segment_in_scene=index, prompt="a fox in snow", scene=Scene(description="a fox in snow"),
                      start_frame=index * frames, frames=frames, head_frames=0, tail_frames=tail, scene_offset_s=0.0,
                      generate_duration_s=duration or rule.fit((frames + tail) / fps, fps), fps=fps, width=width, height=height, seed=3,
                      keyframe_density=0.5, conditioned_on=index - 1 if index else None)


def _png(value: int, width=64, height=32) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


# -- the model's rules ---------------------------------------------------------------------------

def test_frame_counts_snap_to_the_model_rule_and_sizes_to_its_multiple():
    assert [LTX_VIDEO.frames_for(n) for n in (1, 9, 10, 36, 41)] == [1, 9, 17, 41, 41]
    assert [WAN_TI2V_5B.frames_for(n) for n in (10, 13, 14)] == [13, 13, 17]
    assert LTX_VIDEO.size_for(640, 360) == (640, 384) and WAN_TI2V_5B.size_for(640, 360) == (640, 368)
    rule = DurationRule(min_s=1.0, max_s=7.0, frame_step=8)
    assert rule.fit(36 / 24, 24) * 24 == pytest.approx(41)


def test_every_segment_is_generated_at_a_frame_count_the_model_makes():
    from longvid.planning.offline import OfflinePlanner

    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=30, resolution="360p", provider="local")
    planned = OfflinePlanner().plan(spec)
    jobs = segment_storyboard(getattr(planned, "storyboard", planned), spec, LTX_VIDEO.durations())
    assert sum(j.frames for j in jobs) == spec.total_frames
    for job in jobs:
        made = round(job.generate_duration_s * job.fps)
        assert (made - 1) % 8 == 0 and made >= job.frames + job.tail_frames and made <= LTX_VIDEO.max_frames


def test_vram_estimates_come_from_published_figures_and_grow_with_the_clip():
    assert all(f.source.startswith("published:") for p in (LTX_VIDEO, WAN_TI2V_5B) for f in p.vram)
    small = LTX_VIDEO.vram_gb(848, 480, 97, "bf16", offload=True)
    large = LTX_VIDEO.vram_gb(1280, 720, 121, "bf16", offload=True)
    assert 5 <= small < large <= 30 and LTX_VIDEO.vram_gb(1280, 720, 121, "fp32", offload=True) > large


def test_a_chained_ltx_segment_makes_extra_leading_frames_for_its_conditioning():
    job = _job(index=1)
    plan = plan_generation(job, LTX_VIDEO, given_frames=9, generate_height=32)
    keep = round(job.generate_duration_s * job.fps)
    assert (plan.lead_frames, plan.keep_frames) == (8, keep) and plan.num_frames == LTX_VIDEO.frames_for(keep + 8)
    assert (plan.width, plan.height) == (64, 32)  # 57 px wide at 32 high, up to a multiple of 32
    assert plan_generation(job, WAN_TI2V_5B, given_frames=1).lead_frames == 0


def test_ltx_conditions_on_a_frame_count_it_keeps_whole():
    from longvid.providers.local.generation import usable_conditioning

    frames = tuple(bytes([i]) for i in range(12))
    assert usable_conditioning(frames, LTX_VIDEO) == frames[-9:]
    assert usable_conditioning(frames[:5], LTX_VIDEO) == frames[4:5]  # 5 frames: the pipeline would keep 1
    assert usable_conditioning(frames, WAN_TI2V_5B) == frames[-1:] and usable_conditioning((), LTX_VIDEO) == ()


# -- conditioning ---------------------------------------------------------------------------------

def test_conditioning_is_the_seam_png_for_one_image_providers_and_keeps_its_frames_across_ray():
    import pickle

    from ray import cloudpickle

    frames = (_png(10), _png(20), _png(30))
    conditioning = Conditioning(frames)
    assert bytes(conditioning) == frames[-1] and conditioning_pngs(conditioning) == frames
    assert conditioning_pngs(frames[0]) == (frames[0],) and conditioning_pngs(None) == ()
    for back in (pickle.loads(pickle.dumps(conditioning)), from_wire(cloudpickle.loads(cloudpickle.dumps(to_wire(conditioning))))):
        assert back.frames == frames and bytes(back) == frames[-1]
    assert to_wire(b"png") == b"png" and from_wire(None) is None


def test_chain_conditioning_reads_the_frames_up_to_the_seam(tmp_path):
    from longvid.media.encoding import encode_mp4
    from longvid.media.frames import decode_frames
    from longvid.runtime.conditioning import chain_conditioning

    clip = encode_mp4((np.full((32, 64, 3), 8 * i, np.uint8) for i in range(20)), 12, 64, 32)
    conditioning = chain_conditioning(clip, seam_index=12, count=9)
    expected = decode_frames(clip, range(4, 13))
    from PIL import Image

    got = [np.asarray(Image.open(io.BytesIO(f))) for f in conditioning.frames]
    assert len(got) == 9 and all(np.array_equal(g, expected[i]) for g, i in zip(got, range(4, 13)))


# -- weights --------------------------------------------------------------------------------------

def test_a_missing_model_folder_says_where_it_looked_and_how_to_get_it(tmp_path):
    missing = tmp_path / "no-model"
    with pytest.raises(InputError, match=r"no-model \(--model-dir.*does not exist.*hf download Lightricks/LTX-Video-0\.9\.5 --local-dir"):
        load_spec(LocalModelSettings(model_dir=missing))
    missing.mkdir()
    with pytest.raises(InputError, match="not a diffusers model folder"):
        create_provider("local", Settings(local=LocalModelSettings(model_dir=missing)))
    # A driver on a cluster leaves the check to the GPU nodes, whose load fails with the same line.
    on_cluster = create_provider("local", Settings(local=LocalModelSettings(model_dir=missing), ray_address="ray://head:10001"))
    with pytest.raises(InputError, match="not a diffusers model folder"):
        ModelWorker(on_cluster.spec).pipeline()


def test_without_a_folder_the_hugging_face_cache_is_searched_and_named(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(InputError, match=r"not in the Hugging Face cache .*hub.*--allow-download"):
        load_spec(LocalModelSettings())
    assert load_spec(LocalModelSettings(allow_download=True)).source() == LTX_VIDEO.repo_id  # fetched only when allowed


def test_render_with_a_missing_model_exits_2_before_anything_runs(tmp_path, capsys):
    code = main(["render", "a fox", "--provider", "local", "--model-dir", str(tmp_path / "none"), "-d", "5",
                 "--store", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'none'} (--model-dir" in err and "does not exist" in err and "hf download" in err
    assert err.count("\n") == 1  # one line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_providers_shows_whether_weights_and_a_gpu_are_present(tiny_ltx_dir, monkeypatch, capsys):
    monkeypatch.setenv("LONGVID_LOCAL_MODEL_DIR", str(tiny_ltx_dir))
    assert main(["providers", "--json"]) == 0
    import json

    row = next(r for r in json.loads(capsys.readouterr().out)["providers"] if r["name"] == "local")
    assert row["configured"] and row["weights"] == str(tiny_ltx_dir) and row["gpu"] in ("cuda", "none (runs on the CPU)")
    monkeypatch.setenv("LONGVID_LOCAL_MODEL_DIR", str(tiny_ltx_dir / "absent"))
    assert main(["providers"]) == 0
    assert "weights=missing" in capsys.readouterr().out


# -- the resident worker, in this process ---------------------------------------------------------

def test_the_tiny_model_loads_through_the_product_loader_once_and_makes_clips(tiny_ltx_dir):
    from longvid.media.frames import count_frames
    from longvid.media import probe

    settings = LocalModelSettings(model_dir=tiny_ltx_dir, steps=2, generate_height=32)
    worker = ModelWorker(load_spec(settings), settings.steps, settings.generate_height)
    first = worker.generate(_job(0, frames=10, tail=2, fps=12, width=128, height=72), None)
    seam = tuple(_png(20 * i, 128, 72) for i in range(9))
    second = worker.generate(_job(1, frames=10, tail=2, fps=12, width=128, height=72), Conditioning(seam))
    assert worker.stats()["loads"] == 1 and worker.stats()["segments"] == 2
    assert count_frames(first.mp4) == 17 and probe(second.mp4).width == 128  # 12 frames snapped to 8k+1
    seen = worker.conditioning_seen(1)
    from PIL import Image

    assert len(seen) == 9 and all(np.array_equal(s, np.asarray(Image.open(io.BytesIO(p)))) for s, p in zip(seen, seam))
    assert worker.conditioning_seen(0) == []


def test_wan_loads_through_the_same_path_and_starts_from_the_seam_image(tiny_wan_dir):
    from longvid.media.frames import count_frames

    settings = LocalModelSettings(model="wan2.2-ti2v-5b", model_dir=tiny_wan_dir, steps=2, generate_height=32)
    worker = ModelWorker(load_spec(settings), settings.steps, settings.generate_height)
    seam = _png(200, 128, 72)
    job = _job(1, frames=10, tail=2, fps=12, width=128, height=72, duration=WAN_TI2V_5B.durations().fit(12 / 12, 12))
    clip = worker.generate(job, seam)
    assert count_frames(clip.mp4) == 13 and worker.stats()["loads"] == 1  # 12 frames snapped to 4k+1
    from PIL import Image

    (seen,) = worker.conditioning_seen(1)
    assert np.array_equal(seen, np.asarray(Image.open(io.BytesIO(seam))))


# -- cost and resources ---------------------------------------------------------------------------

def test_gpu_time_is_priced_per_gpu_hour(tiny_ltx_dir):
    settings = Settings.from_env({"LONGVID_LOCAL_MODEL_DIR": str(tiny_ltx_dir), "LONGVID_GPU_HOUR_USD": "3.6"})
    caps = provider_capabilities("local", settings)
    assert caps.price_per_second_usd == pytest.approx(LTX_VIDEO.gpu_seconds_per_video_second * 3.6 / 3600)
    provider = create_provider("local", settings)
    provider._seconds["t"] = 10.0  # what a fetch records: the seconds the model worker ran
    assert provider.spent_usd("t") == pytest.approx(0.01) and provider.spent_usd("unknown") is None


def test_the_segment_task_waits_and_the_model_worker_holds_the_gpu(tiny_ltx_dir):
    caps = provider_capabilities("local", Settings(local=LocalModelSettings(model_dir=tiny_ltx_dir)))
    task = estimate(_job(), caps, QualityTier.HIGH)
    assert task.num_gpus == 0 and task.num_cpus < 1
    gpu, custom = model_worker_request(16.0, True, {"GPU": 1, "CPU": 8, "memory": 64e9, VRAM_RESOURCE: 24})
    assert (gpu.num_gpus, gpu.vram_gb, custom) == (1.0, 16.0, {VRAM_RESOURCE: 16.0})
    assert model_worker_request(16.0, True, {"CPU": 8, "memory": 64e9})[0].num_gpus == 1  # autoscaler demand
    cpu, custom = model_worker_request(16.0, False, {"CPU": 2, "memory": 2e9})
    assert cpu.num_gpus == 0 and cpu.memory_bytes <= 2e9 * 0.8 and custom == {}
    assert cpu.num_cpus == 0 and cpu.memory_bytes == 0  # a third worker for other settings still places


def test_local_model_settings_from_the_environment():
    s = Settings.from_env({"LONGVID_LOCAL_MODEL": "wan2.2-ti2v-5b", "LONGVID_LOCAL_MODEL_DIR": "/models/wan", "LONGVID_LOCAL_PRECISION": "fp16",
                           "LONGVID_LOCAL_CPU_OFFLOAD": "1", "LONGVID_LOCAL_STEPS": "8", "LONGVID_LOCAL_WORKERS": "2",
                           "LONGVID_LOCAL_DEVICE": "cuda"}).local
    assert (s.model, s.model_dir, s.precision, s.cpu_offload, s.steps, s.workers, s.device) == (
        "wan2.2-ti2v-5b", Path("/models/wan"), "fp16", True, 8, 2, "cuda")
    for variable, value in (("LONGVID_LOCAL_PRECISION", "int4"), ("LONGVID_LOCAL_DEVICE", "tpu"), ("LONGVID_GPU_HOUR_USD", "-1")):
        with pytest.raises(InputError, match=variable):
            Settings.from_env({variable: value})
    with pytest.raises(InputError, match="unknown local model 'sora'"):
        provider_capabilities("local", Settings.from_env({"LONGVID_LOCAL_MODEL": "sora"}))


def test_cluster_gpu_workers_fit_the_default_model_and_cache_its_weights_on_the_node():
    import yaml

    repo = Path(__file__).resolve().parents[1]
    need = LTX_VIDEO.vram_gb(1280, 720, LTX_VIDEO.max_frames, "bf16", offload=True)
    cluster = yaml.safe_load((repo / "cluster.yaml").read_text())
    for name in ("gpu_l4_spot", "gpu_a10g"):
        node = cluster["available_node_types"][name]
        assert node["resources"][VRAM_RESOURCE] >= need and LTX_VIDEO.repo_id in " ".join(node["worker_setup_commands"])
    assert any("/home/ray/.cache/huggingface" in o for o in cluster["docker"]["run_options"])
    for manifest in ("rayservice.yaml", "rayjob.yaml"):
        docs = [d for d in yaml.safe_load_all((repo / "deploy" / "kuberay" / manifest).read_text()) if d]
        spec = docs[-1]["spec"].get("rayClusterConfig") or docs[-1]["spec"]["rayClusterSpec"]
        gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
        assert json.loads(json.loads(gpu["rayStartParams"]["resources"]))[VRAM_RESOURCE] >= need
        pod = gpu["template"]["spec"]
        assert pod["volumes"][0]["hostPath"]["path"] and LTX_VIDEO.repo_id in " ".join(pod["initContainers"][0]["command"])
        assert {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]} == {"/home/ray/.cache/huggingface"}


def test_the_budget_covers_gpu_time(tiny_ltx_dir, capsys):
    base = ["plan", "a red fox explores a snowy forest", "--provider", "local", "--model-dir", str(tiny_ltx_dir), "-d", "30"]
    assert main([*base, "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)["estimated_cost"]
    assert estimate["low_usd"] > 0  # GPU-seconds at the GPU-hour price, estimated before anything runs
    assert main([*base, "--budget", str(estimate["low_usd"] / 2)]) == 2
    assert "budget" in capsys.readouterr().err


def test_a_cluster_driver_without_the_weights_passes_the_input_check(tmp_path, monkeypatch):
    """The weights live on the GPU nodes: a driver with RAY_ADDRESS and an empty cache is not refused."""
    from huggingface_hub import constants

    from longvid.providers.registry import provider_configured
    from longvid.runtime.pipeline import RenderPipeline

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    here = Settings()
    assert not provider_configured("local", here)  # no weights on a lone machine: refused
    on_cluster = Settings(ray_address="ray://head:10001")
    assert provider_configured("local", on_cluster)
    spec = RenderSpec(prompt="a fox", duration_s=5, provider="local")
    assert RenderPipeline(settings=on_cluster).check_inputs(spec).name == "local"
    with pytest.raises(InputError, match="not in the Hugging Face cache"):
        RenderPipeline(settings=here).check_inputs(spec)


def test_a_failing_local_model_is_tried_again_then_fails_over_not_left_for_resume(tmp_path):
    """A local segment's task lives only in our worker: a crash (no provider verdict) is tried
    once more and then failed over, never left "submitted" for a resume to poll."""
    import dataclasses

    from longvid.manifest import load_manifest
    from longvid.providers import register_provider
    from longvid.providers.preview import PREVIEW_CAPABILITIES, PreviewProvider
    from longvid.runtime import InlineSegmentRunner
    from longvid.runtime.failures import FailureDecision, failure_decision
    from longvid.runtime.pipeline import RenderPipeline
    from longvid.runtime.store import LocalRunStore
    from longvid.spec import SegmentState

    crash = RuntimeError("CUDA error: an illegal memory access")
    assert failure_decision(crash, 1, 2, paid_task=True) is FailureDecision.LEAVE_SUBMITTED  # a paid remote task
    assert failure_decision(crash, 1, 2, resident=True) is FailureDecision.NEW_TASK
    assert failure_decision(crash, 2, 2, resident=True) is FailureDecision.GIVE_UP

    broken = tmp_path / "broken-model"  # found (model_index.json) but it does not load
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "LTXConditionPipeline", "transformer": ["diffusers", "Nope"]}')
    settings = Settings(local=LocalModelSettings(model_dir=broken))

    class Spare(PreviewProvider):  # a provider dearer than local, so local goes first
        capabilities = dataclasses.replace(PREVIEW_CAPABILITIES, name="spare", price_per_second_usd=1.0)

    register_provider("spare", Spare.capabilities, lambda _settings: Spare())
    spec = RenderSpec(prompt="a fox in snow", duration_s=5, resolution="360p", fps=12, provider="local,spare", judge="off",
                      continuity="anchor")
    result = RenderPipeline(LocalRunStore(tmp_path / "runs"), InlineSegmentRunner(), settings=settings).render(spec, run_id="r")
    manifest = load_manifest((tmp_path / "runs" / "r" / "manifest.json").read_text())
    assert result.frames == 5 * 12 and {r.provider for r in manifest.segments} == {"spare"}
    assert all(r.state is SegmentState.ACCEPTED for r in manifest.segments)
    local_tries = [e for e in manifest.ledger if e.provider == "local"]
    assert len(local_tries) == 2 * len(manifest.segments)  # tried again once, then failed over


def test_cached_local_clips_are_reused_only_when_made_with_the_same_weights_and_settings(tiny_ltx_dir, tmp_path):
    """The segment cache keys a local clip on the weights, steps, height and precision too:
    a 2-step render's clips are not reused by a 4-step one (remote providers' keys unchanged)."""
    from longvid.manifest import load_manifest
    from longvid.runtime import InlineSegmentRunner
    from longvid.runtime.pipeline import RenderPipeline
    from longvid.runtime.resume import segment_key
    from longvid.runtime.store import LocalRunStore

    runway = provider_capabilities("runway", Settings())
    assert runway.cache_model == runway.model  # runs made before keep their keys
    two, four = (provider_capabilities("local", Settings(local=LocalModelSettings(model_dir=tiny_ltx_dir, steps=n)))
                 for n in (2, 4))
    assert segment_key("local", two.cache_model, _job(), None) != segment_key("local", four.cache_model, _job(), None)

    store = LocalRunStore(tmp_path / "runs")
    spec = RenderSpec(prompt="a fox in snow", duration_s=5, resolution="360p", fps=12, provider="local", judge="off",
                      continuity="anchor")

    def render(run_id, steps):
        settings = Settings(local=LocalModelSettings(model_dir=tiny_ltx_dir, steps=steps, generate_height=32))
        RenderPipeline(store, InlineSegmentRunner(), settings=settings).render(spec, run_id=run_id)
        return [r.task_id.startswith("cache:") for r in load_manifest((tmp_path / "runs" / run_id / "manifest.json").read_text()).segments]

    assert not any(render("one", 1))
    assert not any(render("two", 2))  # made again, not the 1-step clips
    assert all(render("one-again", 1))  # the same settings do reuse them
