#!/usr/bin/env bash
# Create or update the `synthclip-k8s` Prefect work pool.
#
# It is Prefect's default kubernetes job template with two additions to the flow-run
# container, so credentials reach the pods from Kubernetes secrets and never sit in
# prefect.yaml, the Prefect database or a deployment's job variables:
#   - envFrom the S3 secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL...);
#   - RAY_AUTH_TOKEN from the Ray token secret, to talk to the KubeRay cluster.
#
# Run it wherever `prefect` can reach the server (PREFECT_API_URL set), before the
# worker of infra/k8s/prefect-worker.yaml starts:
#
#   PREFECT_API_URL=http://127.0.0.1:4200/api bash infra/k8s/create-work-pool.sh
set -euo pipefail

POOL="${POOL:-synthclip-k8s}"
S3_SECRET="${S3_SECRET:-synthclip-s3}"
RAY_AUTH_SECRET="${RAY_AUTH_SECRET:-synthclip-ray-auth}"
PYTHON="${PYTHON:-python3}"

workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
template="$workdir/base-job-template.json"

prefect work-pool get-default-base-job-template --type kubernetes --file "$template"

"$PYTHON" - "$template" "$S3_SECRET" "$RAY_AUTH_SECRET" <<'PY'
import json
import sys

path, s3_secret, ray_auth_secret = sys.argv[1:]
with open(path) as f:
    template = json.load(f)

pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
container = pod["containers"][0]
container["envFrom"] = [{"secretRef": {"name": s3_secret}}]
# A literal list in place of the "{{ env }}" placeholder: the worker then puts the
# pool's and the deployment's `env` job variables in front of it, so plain settings
# (RAY_ADDRESS, ...) and secret references both reach the pod.
container["env"] = [
    {
        "name": "RAY_AUTH_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": ray_auth_secret, "key": "auth_token"}},
    }
]

with open(path, "w") as f:
    json.dump(template, f, indent=2)
PY

prefect work-pool create "$POOL" --type kubernetes --base-job-template "$template" --overwrite
echo "work pool $POOL: flow-run pods read secrets $S3_SECRET and $RAY_AUTH_SECRET"
