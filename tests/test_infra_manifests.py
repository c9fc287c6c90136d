"""Static checks of the deployment and infrastructure manifests.

Pure and fast: YAML parsing, validation of the KubeRay manifests against the v1 CRD
schemas kept in ../shared/kuberay, and an `ast` reading of the flow entrypoints (the
flows are not imported: that would pull in the whole stack). The deployments are those
`synthclip deploy` registers: prefect.yaml's and one per stage. No server or cluster.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
KUBERAY_CRDS = HERE.parents[2] / "shared" / "kuberay"

PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
INFRA = REPO / "infra"
DOCKERFILE = INFRA / "Dockerfile"
COMPOSE = INFRA / "docker-compose.yaml"
RAYCLUSTER = INFRA / "kuberay" / "raycluster.yaml"
RAYJOB = INFRA / "kuberay" / "rayjob-train.yaml"
WORKER = INFRA / "k8s" / "prefect-worker.yaml"

LOCAL_POOL, K8S_POOL = "synthclip-local", "synthclip-k8s"
NAMESPACE = "synthclip"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.IGNORECASE)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are ~40k lines


@functools.cache
def load_docs(path: Path) -> tuple[Any, ...]:
    return tuple(yaml.load_all(path.read_text(), Loader=_Loader))


def load_one(path: Path) -> dict:
    (doc,) = load_docs(path)
    return doc


def manifest_files() -> list[Path]:
    roots = (REPO / "deployments", INFRA)
    return sorted(p for r in roots for p in r.rglob("*") if p.suffix in {".yaml", ".yml"})


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))


def dockerfile_workdir() -> str:
    return re.findall(r"^WORKDIR (\S+)$", DOCKERFILE.read_text(), re.MULTILINE)[-1]


def walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from walk(child)


def containers(doc: dict) -> list[dict]:
    return [c for n in walk(doc) if isinstance(n, dict) for c in n.get("containers", [])]


# --- (a) every manifest parses --------------------------------------------------


def test_expected_manifests_exist():
    for path in (PREFECT_FILE, DOCKERFILE, COMPOSE, RAYCLUSTER, RAYJOB, WORKER):
        assert path.is_file(), f"missing {path.relative_to(REPO)}"


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_manifest_parses_as_yaml(path: Path):
    docs = load_docs(path)
    assert docs, f"{path.name} is empty"
    assert all(isinstance(d, dict) and d for d in docs), f"{path.name}: a document is not a mapping"


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB, WORKER], ids=lambda p: p.name)
def test_kubernetes_objects_are_named_in_our_namespace(path: Path):
    for doc in load_docs(path):
        assert {"apiVersion", "kind", "metadata"} <= doc.keys()
        assert doc["metadata"].get("name"), f"{doc['kind']} without a name"
        assert doc["metadata"].get("namespace") == NAMESPACE


# --- (b) KubeRay manifests against the CRD schemas ------------------------------


def strict(schema: Any) -> Any:
    """The schema with unknown fields rejected wherever the API server prunes them.

    A structural CRD schema lists each object's fields but does not say
    `additionalProperties: false`; the API server drops unknown fields silently
    (or refuses them under strict field validation). jsonschema would accept a
    misspelt field, so close every object that lists properties and does not ask
    to keep unknown ones. The `x-kubernetes-*` keys are otherwise ignored.
    """
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    return out


@functools.cache
def crd_validator(kind: str, version: str) -> jsonschema.protocols.Validator:
    if not KUBERAY_CRDS.is_dir():
        pytest.skip(f"KubeRay CRD schemas not found at {KUBERAY_CRDS} (the shared/ checkout)")
    crd = load_one(KUBERAY_CRDS / CRD_FILES[kind])
    assert crd["spec"]["names"]["kind"] == kind
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert version in versions, f"{kind} CRD has no version {version}"
    schema = strict(versions[version]["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def schema_errors(doc: dict) -> list[str]:
    group, version = doc["apiVersion"].split("/")
    assert group == "ray.io"
    validator = crd_validator(doc["kind"], version)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


@pytest.mark.parametrize(
    "path, kind", [(RAYCLUSTER, "RayCluster"), (RAYJOB, "RayJob")], ids=["raycluster", "rayjob"]
)
def test_kuberay_manifest_matches_crd_schema(path: Path, kind: str):
    doc = load_one(path)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == kind
    errors = schema_errors(doc)
    assert not errors, "\n".join(errors)


def test_schema_check_catches_a_misspelt_field():
    doc = load_one(RAYCLUSTER)
    bad = {**doc, "spec": {**doc["spec"], "workerGroupSpec": doc["spec"]["workerGroupSpecs"]}}
    assert any("workerGroupSpec" in e for e in schema_errors(bad))


def test_ray_version_matches_the_image():
    ray_version = dockerfile_args()["RAY_VERSION"]
    assert load_one(RAYCLUSTER)["spec"]["rayVersion"] == ray_version
    assert load_one(RAYJOB)["spec"]["rayClusterSpec"]["rayVersion"] == ray_version


def test_cluster_has_one_gpu_group_per_kind_of_gpu_work():
    """caption, render and train groups, each offering the custom resource the preset asks for."""
    import json

    import yaml

    groups = {g["groupName"]: g for g in load_one(RAYCLUSTER)["spec"]["workerGroupSpecs"]}
    preset = yaml.safe_load((REPO / "configs" / "synthci-30m.yaml").read_text())
    for kind, section in (("caption", "captions"), ("render", "images"), ("train", "train")):
        group = groups[f"{kind}-gpu"]
        offered = json.loads(json.loads(group["rayStartParams"]["resources"]))
        assert preset[section]["ray_resources"] == offered == {f"{kind}_gpu": 1}
        limits = [c["resources"]["limits"] for c in group["template"]["spec"]["containers"]]
        assert [lim.get("nvidia.com/gpu") for lim in limits] == [1]
        assert group["minReplicas"] == 0 < group["maxReplicas"]  # autoscaled from zero


def test_ray_pods_use_the_image_flow_runs_use():
    pool_image = k8s_pool()["job_variables"]["image"]
    for path in (RAYCLUSTER, RAYJOB):
        images = {c["image"] for c in containers(load_one(path))}
        assert images == {pool_image}, f"{path.name}: {images} != {pool_image}"


def test_flow_pods_point_at_the_ray_cluster():
    cluster = load_one(RAYCLUSTER)["metadata"]["name"]
    env = k8s_pool()["job_variables"]["env"]
    head = f"{cluster}-head-svc.{NAMESPACE}.svc"
    assert env["RAY_ADDRESS"].startswith(f"ray://{head}") and env["RAY_ADDRESS"].endswith(":10001")
    assert env["RAY_API_SERVER_ADDRESS"].startswith(f"http://{head}")


def test_secret_names_agree_with_the_work_pool_script():
    referenced = {
        ref
        for path in (RAYCLUSTER, RAYJOB)
        for node in walk(load_one(path))
        if isinstance(node, dict)
        for ref in [node.get("secretRef", {}).get("name"), node.get("secretName")]
        if ref
    }
    script = (INFRA / "k8s" / "create-work-pool.sh").read_text()
    assert referenced == {"synthclip-s3", "synthclip-ray-auth"}
    assert all(f":-{name}}}" in script for name in referenced)


# --- secrets stay out of files ----------------------------------------------------


def literal_secrets(doc: Any) -> list[str]:
    found = []
    for node in walk(doc):
        if not isinstance(node, dict):
            continue
        # Kubernetes env lists: a secret must come from valueFrom.
        if isinstance(node.get("name"), str) and "value" in node and SECRET_NAME.search(node["name"]):
            found.append(node["name"])
        # env mappings (compose, Prefect job variables): only ${VAR} references.
        for key, value in node.items():
            env_like = re.fullmatch(r"[A-Z][A-Z0-9_]*", str(key))
            if isinstance(value, str) and env_like and SECRET_NAME.search(key) and not value.startswith("${"):
                found.append(str(key))
            if isinstance(value, str) and re.search(r"://[^/\s:@]+:(?!\$\{)[^@\s]+@", value):
                found.append(f"{key} (credentials in a URL)")
    return found


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_literal_credentials(path: Path):
    found = [name for doc in load_docs(path) for name in literal_secrets(doc)]
    assert not found, f"{path.name}: literal credentials in {found}"


# --- docker-compose and the worker ---------------------------------------------


def test_compose_runs_prefect_on_postgres_and_minio():
    services = load_one(COMPOSE)["services"]
    assert {"postgres", "prefect-server", "minio"} <= services.keys()
    env = services["prefect-server"]["environment"]
    url = env.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") or env["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url


def test_prefect_versions_agree():
    version = prefect_config()["prefect-version"]
    assert dockerfile_args()["PREFECT_VERSION"] == version
    server_image = load_one(COMPOSE)["services"]["prefect-server"]["image"]
    worker_images = {c["image"] for doc in load_docs(WORKER) for c in containers(doc)}
    for image in {server_image, *worker_images}:
        assert image.split(":", 1)[1].startswith(f"{version}-"), image


def test_worker_polls_the_defined_kubernetes_pool():
    (deployment,) = [d for d in load_docs(WORKER) if d["kind"] == "Deployment"]
    (container,) = containers(deployment)
    command = " ".join(container["command"])
    assert "prefect worker start" in command
    assert f"--pool {K8S_POOL}" in command and "--type kubernetes" in command
    assert K8S_POOL in defined_pools()


# --- (c) prefect.yaml ------------------------------------------------------------


def prefect_config() -> dict:
    return load_one(PREFECT_FILE)


def defined_pools() -> dict[str, dict]:
    return {p["name"]: p for p in prefect_config()["definitions"]["work_pools"].values()}


def k8s_pool() -> dict:
    return defined_pools()[K8S_POOL]


@functools.lru_cache(maxsize=1)
def deployments() -> list[dict]:
    from flows.deploy import deployment_spec

    return deployment_spec()["deployments"]


def by_name(name: str) -> dict:
    (dep,) = [d for d in deployments() if d["name"] == name]
    return dep


DEPLOYMENT_NAMES = [d["name"] for d in deployments()]


def flow_signature(path: Path, func: str) -> ast.arguments | None:
    """A top-level flow function's arguments; for a stage's flow (``<stage>_flow`` in
    flows/stages.py, made by ``stage_flow``) those of the function ``stage_flow`` wraps."""
    from synthclip_core.pipeline import STAGES

    body, name = ast.parse(path.read_text(), filename=str(path)).body, func
    if path.name == "stages.py" and func.removesuffix("_flow") in STAGES:
        (maker,) = [n for n in body if isinstance(n, ast.FunctionDef) and n.name == "stage_flow"]
        body, name = maker.body, "run_one"
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return node.args
    return None


def test_the_expected_deployments_exist():
    expected = {"build-offline", "build-paper-scale", "resume", "resume-latest", "evaluate-checkpoint"}
    expected |= {"concepts", "captions", "balanced", "topup", "images", "rewrites", "shards", "train", "eval", "card"}
    assert expected <= set(DEPLOYMENT_NAMES)
    assert len(DEPLOYMENT_NAMES) == len(set(DEPLOYMENT_NAMES)), "duplicate deployment names"
    assert by_name("build-offline")["parameters"]["config"] == "configs/offline.yaml"
    paper = by_name("build-paper-scale")
    assert paper["parameters"]["config"] == "configs/synthci-30m.yaml"
    assert paper["work_pool"]["name"] == K8S_POOL


def test_pools_are_the_local_and_kubernetes_ones():
    assert set(defined_pools()) == {LOCAL_POOL, K8S_POOL}


@pytest.mark.parametrize("name", DEPLOYMENT_NAMES)
def test_entrypoint_names_a_flow_function(name: str):
    entrypoint = by_name(name)["entrypoint"]
    rel_path, _, func = entrypoint.rpartition(":")
    path = REPO / rel_path
    assert rel_path.endswith(".py") and func, f"{name}: entrypoint {entrypoint!r} is not path.py:func"
    assert path.is_file(), f"{name}: {rel_path} does not exist"
    args = flow_signature(path, func)
    assert args is not None, f"{name}: {rel_path} defines no top-level function {func!r}"
    accepted = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    extra = set(by_name(name).get("parameters") or {}) - accepted
    assert args.kwarg or not extra, f"{name}: {func}() takes no parameter(s) {sorted(extra)}"


@pytest.mark.parametrize("name", DEPLOYMENT_NAMES)
def test_config_parameters_name_existing_files(name: str):
    config = (by_name(name).get("parameters") or {}).get("config")
    if config is not None:
        assert (REPO / config).is_file(), f"{name}: config {config} does not exist"


@pytest.mark.parametrize("name", DEPLOYMENT_NAMES)
def test_work_pool_is_defined(name: str):
    assert by_name(name)["work_pool"]["name"] in defined_pools()


@pytest.mark.parametrize("name", DEPLOYMENT_NAMES)
def test_runs_from_the_code_where_its_pool_has_it(name: str):
    dep = by_name(name)
    steps = dep.get("pull", prefect_config().get("pull")) or []
    dirs = [
        s["prefect.deployments.steps.set_working_directory"]["directory"]
        for s in steps
        if "prefect.deployments.steps.set_working_directory" in s
    ]
    assert len(dirs) == 1, f"{name}: expected one set_working_directory pull step"
    if dep["work_pool"]["name"] == K8S_POOL:
        assert dirs[0] == dockerfile_workdir(), f"{name}: pods have the code at {dockerfile_workdir()}"
    else:
        # The process worker starts runs in a temporary directory: relative paths break.
        assert dirs[0].startswith("/") or re.fullmatch(r"\{\{ *\$\w+ *\}\}", dirs[0])


def test_no_build_or_push_steps():
    config = prefect_config()
    assert not config.get("build") and not config.get("push")
    for dep in deployments():
        assert not dep.get("build") and not dep.get("push"), dep["name"]


def test_cron_schedules_are_inactive_by_default():
    config = prefect_config()
    schedules = list(config["definitions"].get("schedules", {}).values())
    schedules += [s for d in deployments() for s in d.get("schedules") or []]
    crons = [s for s in schedules if "cron" in s]
    assert crons, "expected the paper-scale cron schedule"
    for schedule in crons:
        assert schedule.get("active") is False, f"cron {schedule['cron']!r} is active by default"
    assert by_name("build-paper-scale").get("schedules")


def test_cpu_and_gpu_images_agree_on_ray_prefect_and_workdir():
    cpu = REPO / "infra" / "Dockerfile.cpu"
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", cpu.read_text(), re.MULTILINE))
    gpu = dockerfile_args()
    assert args["RAY_VERSION"] == gpu["RAY_VERSION"] and args["PREFECT_VERSION"] == gpu["PREFECT_VERSION"]
    assert re.findall(r"^WORKDIR (\S+)$", cpu.read_text(), re.MULTILINE)[-1] == dockerfile_workdir()
    assert "vllm" not in cpu.read_text().split("FROM", 1)[1].replace("no vLLM", "")  # no GPU-only packages


def builtin_docs() -> list[tuple[str, dict]]:
    """Every object of a built-in Kubernetes kind (not KubeRay's) in infra/."""
    return [(f"{path.name}#{i}", doc) for path in manifest_files() for i, doc in enumerate(load_docs(path))
            if isinstance(doc, dict) and doc.get("kind") not in CRD_FILES and "apiVersion" in doc]


@pytest.mark.parametrize("where,doc", builtin_docs(), ids=[w for w, _ in builtin_docs()])
def test_builtin_kinds_validate_against_the_kubernetes_schema(where: str, doc: dict):
    import kubernetes_validate

    kubernetes_validate.validate(doc, desired_version="1.33", strict=True)  # raises with the field path
