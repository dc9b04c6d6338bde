"""Where the local model worker goes beside the judge and the context compressor, and a
bounded wait when it cannot go anywhere (issue 12 review: a one-GPU render hung forever)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from longvid.consistency import JudgeConfig, compressor_actor_options, judge_actor_options
from longvid.providers.local.placement import MODEL_WORKER_GPU_SHARE, unplaced_reason, wants_gpu


def test_the_model_worker_leaves_room_for_a_judge_and_a_compressor_on_one_gpu():
    one_gpu = {"CPU": 8, "GPU": 1, "memory": 32e9}
    helpers = judge_actor_options(one_gpu, JudgeConfig(backend="clip"))["num_gpus"] + compressor_actor_options(one_gpu)["num_gpus"]
    assert helpers > 0 and MODEL_WORKER_GPU_SHARE + helpers <= 1.0
    assert MODEL_WORKER_GPU_SHARE > 0.5  # two model workers never share a GPU


def test_auto_asks_for_a_gpu_only_where_one_is_declared_and_cuda_always():
    assert wants_gpu("auto", {"GPU": 1}) and not wants_gpu("auto", {"CPU": 4})
    assert wants_gpu("cuda", {"CPU": 4})  # an autoscaler's pending demand brings the GPU node
    assert not wants_gpu("cpu", {"GPU": 4})


def test_the_unplaced_reason_names_what_was_asked_and_what_the_cluster_has():
    line = unplaced_reason("longvid-local-x-0", {"num_cpus": 1, "num_gpus": 0.7, "memory": 8 * 1024**3,
                                                 "resources": {"longvid_vram_gb": 28.1}}, 5,
                           {"CPU": 4, "GPU": 1, "memory": 16 * 1024**3, "longvid_vram_gb": 24}, {"CPU": 3, "GPU": 0.2})
    assert "\n" not in line and "within 5 s" in line
    assert "asks for CPU 1, GPU 0.7, memory 8.0 GB, longvid_vram_gb 28.1" in line
    assert "has CPU 4, GPU 1, memory 16.0 GB, longvid_vram_gb 24 in all, CPU 3, GPU 0.2, memory 0.0 GB free" in line


_ONE_GPU_MACHINE = textwrap.dedent("""
    import ray
    from longvid.consistency import JudgeConfig, compressor_actor_options, judge_actor_options
    from longvid.providers.base import GenerationFailed
    from longvid.providers.local import pool
    from longvid.providers.local.loader import load_spec
    from longvid.settings import LocalModelSettings
    from longvid.spec import Scene, SegmentJob

    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False)
    resources = ray.cluster_resources()

    @ray.remote
    class Helper:
        def ready(self):
            return True

    # What a render with the CLIP judge places before its first segment.
    helpers = [Helper.options(**judge_actor_options(resources, JudgeConfig(backend="clip"))).remote(),
               Helper.options(**compressor_actor_options(resources)).remote()]
    ray.get([h.ready.remote() for h in helpers])
    settings = LocalModelSettings(model_dir="/nonexistent", workers=2, placement_timeout_s=2)
    spec = load_spec(settings, check_here=False)
    job = SegmentJob(index=0, scene_index=0, segment_in_scene=0, prompt="p", scene=Scene(description="p"), start_frame=0,
                     frames=16, generate_duration_s=2.0, fps=8, width=64, height=32, seed=1)
    first = pool.ray_worker(spec, settings, job)
    pool.wait_placed(pool.worker_name(spec, settings, 0), first, 60)
    print("PLACED", ray.get(first.stats.remote())["loads"])
    second = pool.ray_worker(spec, settings, job.model_copy(update={"index": 1}))
    try:
        pool.wait_placed(pool.worker_name(spec, settings, 1), second, 2)
    except GenerationFailed as exc:
        print("REFUSED", exc.failure_code, str(exc))
""")


@pytest.mark.slow
def test_on_a_one_gpu_machine_the_worker_is_placed_beside_the_judge_and_an_unplaceable_one_says_why():
    """A Ray of its own (num_gpus=1 declared, no CUDA needed), so a subprocess: the judge and
    compressor take their slices first, the model worker still places; a second worker (no
    GPU left for it) fails within its timeout with the resources it wanted, not a hang."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, RAY_ADDRESS="", PYTHONPATH=str(root), RAY_AUTH_MODE="disabled")
    out = subprocess.run([sys.executable, "-c", _ONE_GPU_MACHINE], cwd=root, env=env, capture_output=True, text=True,
                         timeout=240)
    assert "PLACED 0" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
    refused = next(line for line in out.stdout.splitlines() if line.startswith("REFUSED"))
    assert "LOCAL.UNPLACED" in refused and "within 2 s" in refused and "GPU 0.7" in refused and "GPU 1" in refused


def _manifests(root: Path):
    import yaml

    return [d for path in sorted((root / "deploy" / "kuberay").glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def test_the_deploy_files_set_local_model_settings_where_the_driver_runs_and_own_the_weights_cache():
    """Settings are read by the driver (the head, the Serve replicas): on the GPU workers alone
    they did nothing. cuda makes the pending model worker bring a GPU node up; the weights'
    host folder must be writable by the container's uid 1000."""
    import yaml

    from longvid.settings import Settings

    root = Path(__file__).resolve().parent.parent
    docs = _manifests(root)
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "longvid-config")["data"]
    local = Settings.from_env(config).local
    assert local.device == "cuda" and local.cpu_offload and wants_gpu(local.device, {"CPU": 0})  # no GPU node up yet
    assert local.max_vram_gb == 24
    for doc in docs:
        if doc["kind"] not in ("RayJob", "RayService"):
            continue
        spec = doc["spec"].get("rayClusterConfig") or doc["spec"]["rayClusterSpec"]
        gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")["template"]["spec"]
        assert not [e for e in gpu["containers"][0].get("env", []) if e["name"].startswith("LONGVID_LOCAL_")]
        fetch = gpu["initContainers"][0]
        assert fetch["securityContext"]["runAsUser"] == 0 and "chown -R 1000:" in " ".join(fetch["command"])
    cluster = yaml.safe_load((root / "cluster.yaml").read_text())
    options = " ".join(cluster["docker"]["run_options"])
    assert "-e LONGVID_LOCAL_DEVICE=cuda" in options and "-e LONGVID_LOCAL_CPU_OFFLOAD=1" in options
    assert "-e LONGVID_LOCAL_MAX_VRAM_GB=24" in options
    host_cache = next(o for o in cluster["docker"]["run_options"] if ".cache/huggingface" in o).split()[-1].split(":")[0]
    assert f"mkdir -p {host_cache}" in cluster["initialization_commands"]


def test_a_local_segments_gpu_seconds_are_its_model_workers_not_its_waiting_tasks():
    """The segment task of a resident model holds no GPU (it waits): the metric takes the
    seconds the worker ran, the figure the ledger bills; a GPU-holding task counts as before."""
    from longvid.observability.render_events import gpu_seconds
    from longvid.providers.local import LocalProvider
    from longvid.settings import LocalModelSettings

    assert gpu_seconds({"CPU": 0.25}, 30.0, 12.5) == 12.5
    assert gpu_seconds({"GPU": 0.5}, 30.0, None) == 15.0 and gpu_seconds({"CPU": 1}, 30.0, None) == 0.0
    provider = LocalProvider(LocalModelSettings(model_dir=Path("/nonexistent")), check_weights=False)
    assert provider.worker_seconds("never-fetched") is None


def test_segments_no_gpu_node_could_hold_are_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    """The VRAM need comes from the size and frames really generated (lead frames, the
    generate height); above LONGVID_LOCAL_MAX_VRAM_GB the render exits 2 with one line."""
    from longvid.cli import main
    from longvid.providers.local.placement import clip_vram_gb, oversized_reason
    from longvid.providers.local.profiles import LTX_VIDEO

    assert clip_vram_gb(LTX_VIDEO, 1280, 720, 161, None, True) > LTX_VIDEO.vram_gb(1280, 720, 161, "bf16")  # + lead frames
    assert clip_vram_gb(LTX_VIDEO, 1280, 720, 161, None, True, generate_height=480) < 16  # made smaller, scaled up
    assert oversized_reason(LTX_VIDEO, 848, 480, 24, None, True, None, 24) is None  # 480p fits a 24 GB node
    assert oversized_reason(LTX_VIDEO, 1920, 1080, 24, None, True, None, None) is None  # no limit configured
    reason = oversized_reason(LTX_VIDEO, 1280, 720, 30, None, True, None, 24)
    assert "209 frames at 30 fps" in reason and "LONGVID_LOCAL_MAX_VRAM_GB=24" in reason

    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text("{}")  # found; never loaded: the check comes first
    monkeypatch.setenv("LONGVID_LOCAL_MAX_VRAM_GB", "24")
    code = main(["render", "a fox", "--provider", "local", "--model-dir", str(model), "-d", "5", "--resolution", "1080p",
                 "--store", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "GB of GPU memory for 1920x1080" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
