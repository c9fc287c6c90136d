"""The deployments ``synthclip deploy`` registers: those of ``deployments/prefect.yaml``, and one
per stage of the pipeline, made from the file's ``definitions.stage_deployment`` template, so a
new stage is deployable without an edit there."""

from __future__ import annotations

from pathlib import Path

import yaml

from synthclip_core.pipeline import PIPELINE

REPO = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO / "deployments" / "prefect.yaml"


def deployment_spec(path: Path = PREFECT_FILE) -> dict:
    """The prefect.yaml document with a deployment for every stage (``flows/stages.py:<stage>_flow``)."""
    spec = yaml.safe_load(path.read_text())
    template = spec["definitions"]["stage_deployment"]
    stages = [{**template, "name": stage.name, "entrypoint": f"flows/stages.py:{stage.name}_flow",
               "description": f"{stage.description} One stage of an existing run: -p run_id=ID [-p root=URI].",
               "tags": [*template.get("tags", []), stage.name]}
              for stage in PIPELINE]
    spec["deployments"] = stages + spec["deployments"]
    return spec
