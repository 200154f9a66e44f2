"""Static checks of the Dockerfile, docker-compose.yml, .env.example and deploy/k8s/*.yaml.

No Docker engine or Kubernetes runs here, so the files are parsed (PyYAML) and every command
they start is parsed by the CLI it names: an unknown command, option or bad value fails here
instead of in a crash-looping container. Environment variables must be ones the code reads;
dependencies, healthchecks, the GPU reservation and the Ray topology must be in place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import (
    REPO,
    env_vars_read,
    interpolate,
    parse_argv,
    ray_env_vars_known,
    split_shell,
    variables_in,
)

COMPOSE_PATH = REPO / "docker-compose.yml"
K8S = REPO / "deploy" / "k8s"
OUR_SERVICES = ("migrate", "api", "ray-head", "ray-worker", "dispatcher", "datasets")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_PATH.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _compose_argvs(service: dict[str, Any]) -> list[list[str]]:
    """The command lines a compose service runs (the image's ENTRYPOINT is `lcw-sweep`)."""
    entrypoint = service.get("entrypoint", ["lcw-sweep"])
    command = [interpolate(str(word)) for word in service.get("command", [])]
    if entrypoint == ["sh", "-c"]:
        (script,) = command
        return split_shell(script)
    return [[*entrypoint, *command]]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def _check_env_names(names: set[str], where: str) -> None:
    unknown_lcw = {n for n in names if n.startswith("LCW_")} - env_vars_read()
    assert not unknown_lcw, f"{where}: LCW_ variables nothing reads: {sorted(unknown_lcw)}"
    unknown_ray = {n for n in names if n.startswith("RAY_")} - ray_env_vars_known()
    assert not unknown_ray, f"{where}: RAY_ variables Ray does not know: {sorted(unknown_ray)}"
    other = {n for n in names if not n.startswith(("LCW_", "RAY_"))}
    assert not other, f"{where}: unexpected variables {sorted(other)}"


# -- docker-compose.yml ---------------------------------------------------------------------


def test_compose_has_the_cluster_services(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", *OUR_SERVICES}


def test_every_compose_command_is_a_real_cli_command(services: dict[str, Any]) -> None:
    parsed = {
        name: [parse_argv(argv) for argv in _compose_argvs(services[name])] for name in OUR_SERVICES
    }
    assert parsed["migrate"] == [("lcw-sweep", "db upgrade", {"revision": "head"})]
    ((program, command, api),) = parsed["api"]
    assert (program, command) == ("lcw-sweep", "serve")
    assert api["no_worker"] is True and api["host"] == "0.0.0.0"

    ((_, head_cmd, head),) = parsed["ray-head"]
    assert head_cmd == "start" and head["head"] and head["block"]
    ((_, worker_cmd, worker),) = parsed["ray-worker"]
    assert worker_cmd == "start" and worker["block"] and not worker["head"]
    assert worker["address"] == f"ray-head:{head['port']}"

    # The dispatcher joins Ray as a node without resources, then runs `lcw-sweep worker`.
    (_, join_cmd, join), (program, command, dispatcher) = parsed["dispatcher"]
    assert join_cmd == "start" and join["num_cpus"] == 0 and join["num_gpus"] == 0
    assert join["address"] == f"ray-head:{head['port']}"
    assert (program, command) == ("lcw-sweep", "worker")
    assert dispatcher["ray_address"] == f"ray-head:{head['port']}"
    assert dispatcher["metrics_port"] == 9100  # lcw_dispatcher_* for Prometheus


def test_compose_commands_with_unknown_options_would_fail() -> None:
    """The check above has teeth: a wrong option or command is a parse error."""
    with pytest.raises(Exception, match="--nope"):
        parse_argv(["lcw-sweep", "worker", "--nope"])
    with pytest.raises(AssertionError, match="no command"):
        parse_argv(["lcw-sweep", "dispatch"])
    with pytest.raises(Exception, match="--no-such-flag"):
        parse_argv(["ray", "start", "--no-such-flag"])


def test_compose_services_share_one_image_built_by_variant(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in OUR_SERVICES}
    builds = [services[name]["build"] for name in OUR_SERVICES]
    assert len(images) == 1, images
    assert all(b == builds[0] for b in builds)
    assert builds[0]["context"] == "."
    assert "VARIANT" in builds[0]["args"]
    variant = interpolate(builds[0]["args"]["VARIANT"])
    assert variant in ("cpu", "cuda")


def test_compose_environment_is_what_the_code_reads(services: dict[str, Any]) -> None:
    for name in OUR_SERVICES:
        _check_env_names(set(_environment(services[name])), f"compose service {name}")


def test_database_credentials_only_where_the_database_is_used(services: dict[str, Any]) -> None:
    """Trials never open the database (DESIGN): Ray nodes get no LCW_DATABASE_URL."""
    with_db = {n for n in OUR_SERVICES if "LCW_DATABASE_URL" in _environment(services[n])}
    assert with_db == {"migrate", "api", "dispatcher"}
    urls = {_environment(services[n])["LCW_DATABASE_URL"] for n in with_db}
    assert len(urls) == 1
    url = interpolate(urls.pop())
    assert url.startswith("postgresql://") and "@postgres:5432/" in url
    # Same user and database as the postgres service creates.
    pg = _environment(services["postgres"])
    assert url == (
        f"postgresql://{interpolate(pg['POSTGRES_USER'])}:<POSTGRES_PASSWORD>"
        f"@postgres:5432/{interpolate(pg['POSTGRES_DB'])}"
    )


def test_api_tokens_are_required_and_ray_auth_is_shared(services: dict[str, Any]) -> None:
    api_env = _environment(services["api"])
    assert ("LCW_API_TOKENS", ":?") in set(variables_in(api_env["LCW_API_TOKENS"]))
    ray_nodes = ("ray-head", "ray-worker", "dispatcher")
    modes = {_environment(services[n]).get("RAY_AUTH_MODE") for n in ray_nodes}
    tokens = {_environment(services[n]).get("RAY_AUTH_TOKEN") for n in ray_nodes}
    assert modes == {"token"}
    assert len(tokens) == 1 and ("RAY_AUTH_TOKEN", ":?") in set(variables_in(tokens.pop()))


def test_compose_dependencies_and_healthchecks(services: dict[str, Any]) -> None:
    expected = {
        "migrate": {"postgres": "service_healthy"},
        "api": {"migrate": "service_completed_successfully"},
        "ray-worker": {"ray-head": "service_healthy"},
        "dispatcher": {
            "migrate": "service_completed_successfully",
            "ray-head": "service_healthy",
        },
    }
    for name, deps in expected.items():
        got = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert got == deps, name
        for dep, condition in deps.items():
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} needs a healthcheck"
    assert services["migrate"]["restart"] == "no"
    for name in ("postgres", "api", "ray-head"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    head_check = services["ray-head"]["healthcheck"]["test"][1:]
    assert parse_argv(head_check)[1] == "status"


def test_postgres_keeps_its_data_in_a_named_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    mounts = [m.split(":") for m in services["postgres"]["volumes"]]
    (volume,) = [src for src, dst in mounts if dst == "/var/lib/postgresql/data"]
    assert volume in compose["volumes"]


def test_ray_worker_reserves_gpus_and_scales(services: dict[str, Any]) -> None:
    worker = services["ray-worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert int(interpolate(str(device["count"]))) >= 1
    # `docker compose up --scale ray-worker=N` needs no fixed name and no host ports.
    assert "container_name" not in worker and "ports" not in worker
    assert "shm_size" in worker  # Ray's object store lives in /dev/shm


def test_env_example_matches_the_compose_variables(services: dict[str, Any]) -> None:
    text = COMPOSE_PATH.read_text()
    used = {name for name, _ in variables_in(text)}
    required = {name for name, op in variables_in(text) if op == ":?"}
    example = REPO / ".env.example"
    defined = {
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    }
    mentioned = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example.read_text(), re.M))
    assert required <= defined, f"required but not in .env.example: {required - defined}"
    assert defined <= used, f"in .env.example but unused: {defined - used}"
    assert used <= mentioned, f"not documented in .env.example: {used - mentioned}"
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()


# -- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_and_runs_the_cli() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.M | re.I)
    assert len(stages) >= 2, stages
    assert re.search(r"^COPY --from=build ", text, re.M)
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M)
    assert "cpu)" in text and "cuda)" in text  # the torch index per variant
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["lcw-sweep"\]$', text, re.M)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'lcw-sweep = "service.cli:app"' in pyproject
    for package in ("lcw", "service", "workers"):
        assert re.search(rf"^COPY {package} {package}$", text, re.M), package
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd is not None
    assert parse_argv(["lcw-sweep", *yaml.safe_load(cmd.group(1))])[1] == "serve"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert {".venv", ".env", ".git"} <= set(ignored)


# -- deploy/k8s -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[(doc["kind"], doc.get("metadata", {}).get("name", path.stem))] = doc
    return docs


def _pod_specs(k8s: dict[tuple[str, str], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pods = {}
    for (kind, name), doc in k8s.items():
        if kind == "Deployment":
            pods[name] = doc["spec"]["template"]["spec"]
        elif kind == "RayCluster":
            pods[f"{name}-head"] = doc["spec"]["headGroupSpec"]["template"]["spec"]
            for group in doc["spec"]["workerGroupSpecs"]:
                pods[f"{name}-{group['groupName']}"] = group["template"]["spec"]
    return pods


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _k8s_argvs(container: dict[str, Any]) -> list[list[str]]:
    command = container.get("command", ["lcw-sweep"])  # the image's ENTRYPOINT
    args = [str(a) for a in container.get("args", [])]
    if command == ["sh", "-c"]:
        (script,) = args
        return split_shell(script)
    return [[*command, *args]]


def test_kustomization_lists_every_manifest(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    kustomization = k8s[("Kustomization", "kustomization")]
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert (K8S / "README.md").exists()


def test_raycluster_has_a_head_and_a_gpu_worker_group(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    import ray

    (cluster,) = [doc for (kind, _), doc in k8s.items() if kind == "RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["rayVersion"] == ray.__version__  # the image's Ray
    head = cluster["spec"]["headGroupSpec"]
    assert head["template"]["spec"]["containers"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    gpu_groups = [
        group
        for group in cluster["spec"]["workerGroupSpecs"]
        if any(
            "nvidia.com/gpu" in c.get("resources", {}).get("limits", {})
            for c in group["template"]["spec"]["containers"]
        )
    ]
    assert gpu_groups, "no worker group requests nvidia.com/gpu"
    group = gpu_groups[0]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    # rayStartParams are `ray start` options: they must exist.
    for params in (head["rayStartParams"], group["rayStartParams"]):
        argv = ["ray", "start", *(f"--{key}={value}" for key, value in params.items())]
        parse_argv(argv)


def test_every_k8s_command_is_a_real_cli_command(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    pods = _pod_specs(k8s)
    commands = {
        (pod_name, c["name"]): [parse_argv(argv) for argv in _k8s_argvs(c)]
        for pod_name, pod in pods.items()
        if not pod_name.startswith("lcw-ray")  # KubeRay starts Ray in those itself
        for c in _containers(pod)
    }
    assert commands[("lcw-api", "migrate")] == [("lcw-sweep", "db upgrade", {"revision": "head"})]
    ((program, command, api),) = commands[("lcw-api", "api")]
    assert (program, command) == ("lcw-sweep", "serve")
    assert api["no_worker"] and api["host"] == "0.0.0.0"
    (_, join_cmd, join), (program, command, worker) = commands[("lcw-dispatcher", "dispatcher")]
    assert join_cmd == "start" and join["num_cpus"] == 0 and join["num_gpus"] == 0
    # KubeRay names the head's Service <cluster>-head-svc; the GCS listens on 6379.
    (cluster_name,) = [name for kind, name in k8s if kind == "RayCluster"]
    head = f"{cluster_name}-head-svc:6379"
    assert join["address"] == head
    assert (program, command, worker["ray_address"]) == ("lcw-sweep", "worker", head)
    # The dispatcher's metrics port is the one its container and Service name "dispatcher".
    pod = k8s[("Deployment", "lcw-dispatcher")]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in pod["ports"]}
    assert ports["dispatcher"] == worker["metrics_port"] == 9100


def test_k8s_images_are_one_image(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    images = {c["image"] for pod in _pod_specs(k8s).values() for c in _containers(pod)}
    assert len(images) == 1, images


def test_k8s_environment_is_what_the_code_reads(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    config = k8s[("ConfigMap", "lcw-config")]["data"]
    secret = k8s[("Secret", "lcw-secrets")]["stringData"]
    _check_env_names(set(config), "ConfigMap lcw-config")
    _check_env_names(set(secret), "Secret lcw-secrets")
    for pod_name, pod in _pod_specs(k8s).items():
        for container in _containers(pod):
            where = f"{pod_name}/{container['name']}"
            names = set()
            for source in container.get("envFrom", []):
                ref = source["configMapRef"]["name"]
                assert ("ConfigMap", ref) in k8s, where
                names |= set(k8s[("ConfigMap", ref)]["data"])
            for var in container.get("env", []):
                names.add(var["name"])
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ref["name"]) in k8s, where
                    assert ref["key"] in k8s[("Secret", ref["name"])]["stringData"], where
            _check_env_names(names, where)
            has_db = "LCW_DATABASE_URL" in names
            # Trials never open the database: no credentials on Ray pods.
            assert has_db == (not pod_name.startswith("lcw-ray")), where


def test_k8s_services_select_their_pods_and_probes_use_livez_and_readyz(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for service_name in ("lcw-api", "lcw-dispatcher"):
        service = k8s[("Service", service_name)]
        deployment = k8s[("Deployment", service_name)]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        port_names = {
            p["name"]
            for c in deployment["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, service_name
    api = k8s[("Deployment", "lcw-api")]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/livez"  # never the database
    for pod in _pod_specs(k8s).values():
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_manifests_are_plain_yaml_documents() -> None:
    for path in [COMPOSE_PATH, *K8S.glob("*.yaml")]:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            assert doc is None or isinstance(doc, dict), path


# -- checkpoints ----------------------------------------------------------------------------


def test_compose_ray_nodes_share_a_checkpoint_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """Trials save to LCW_CHECKPOINT_DIR on whichever Ray node runs them, and resume on any:
    one named volume under that path on every Ray node; the dispatcher sends the same path."""
    where = {_environment(services[n]).get("LCW_CHECKPOINT_DIR") for n in ("ray-head",
             "ray-worker", "dispatcher")}  # fmt: skip
    (path,) = where
    assert path and path.startswith("/")
    for name in ("ray-head", "ray-worker"):
        mounts = [m.split(":") for m in services[name]["volumes"]]
        (volume,) = [src for src, dst, *_ in mounts if path.startswith(dst.rstrip("/") + "/")]
        assert volume in compose["volumes"], name


def test_k8s_ray_pods_mount_a_shared_checkpoint_volume(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    path = k8s[("ConfigMap", "lcw-config")]["data"]["LCW_CHECKPOINT_DIR"]
    claim = k8s[("PersistentVolumeClaim", "lcw-checkpoints")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # a trial resumes on any node
    ray_pods = {n: pod for n, pod in _pod_specs(k8s).items() if n.startswith("lcw-ray")}
    assert len(ray_pods) >= 2  # the head and the GPU workers
    for name, pod in ray_pods.items():
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = [m for m in container["volumeMounts"] if m["mountPath"] == path]
        assert mounts and not mounts[0].get("readOnly"), name
        source = volumes[mounts[0]["name"]]["persistentVolumeClaim"]["claimName"]
        assert source == "lcw-checkpoints", name


def test_a_one_shot_fetch_fills_the_datasets_the_ray_nodes_mount(
    services: dict[str, Any], k8s: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """`lcw-sweep data fetch` writes where the Ray nodes read (compose and k8s), and only there."""
    fetch = services["datasets"]
    assert fetch["profiles"] == ["datasets"]  # run on demand, not by `up`
    ((program, command, args),) = [parse_argv(argv) for argv in _compose_argvs(fetch)]
    assert (program, command) == ("lcw-sweep", "data fetch")
    assert set(args["names"]) == {"mnist", "fashion_mnist", "cifar10", "cifar100"}
    data_dir = _environment(fetch)["LCW_DATA_DIR"]
    assert data_dir == _environment(services["ray-worker"])["LCW_DATA_DIR"]
    (writes,) = [m for m in fetch["volumes"] if m.endswith(f":{data_dir}")]  # read-write
    for node in ("ray-head", "ray-worker"):
        assert f"{writes}:ro" in services[node]["volumes"], node  # same source, read-only

    job = k8s[("Job", "lcw-datasets-fetch")]["spec"]["template"]["spec"]
    (container,) = job["containers"]
    ((program, command, args),) = [parse_argv(argv) for argv in _k8s_argvs(container)]
    assert (program, command) == ("lcw-sweep", "data fetch")
    assert set(args["names"]) == {"mnist", "fashion_mnist", "cifar10", "cifar100"}
    env = {v["name"]: v["value"] for v in container["env"]}
    _check_env_names(set(env), "Job lcw-datasets-fetch")
    assert env["LCW_DATA_DIR"] == k8s[("ConfigMap", "lcw-config")]["data"]["LCW_DATA_DIR"]
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == env["LCW_DATA_DIR"] and not mount.get("readOnly")
    volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in job["volumes"]}
    assert volumes[mount["name"]] == "lcw-datasets"
    claim = k8s[("PersistentVolumeClaim", "lcw-datasets")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # the Job writes, Ray pods read
    assert container["image"] in {
        c["image"] for pod in _pod_specs(k8s).values() for c in _containers(pod)
    }
