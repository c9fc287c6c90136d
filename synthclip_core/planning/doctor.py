"""``synthclip doctor [CONFIG]``: whether this machine can run a config, before a first GPU run.

Each check is one line with what was found and, when it fails, what to do: GPUs, CUDA and NCCL
as torch sees them; vLLM importable where the caption actors will import it (their own
interpreter, ``captions.python``); the hub reachable and a token set for each hub model (or the
model in the local cache); free disk under the root against what ``synthclip plan`` expects the
run to store; and whether the Ray cluster this run would use can host every stage's pools
(:mod:`.resources`), each shortfall naming the config field.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

State = Literal["ok", "warn", "fail", "skip"]


@dataclass
class Check:
    name: str
    state: State
    detail: str


def run_checks(cfg=None, root: str | None = None, bank_size: int | None = None) -> list[Check]:
    from ..pipeline import stages_for

    checks = [_gpus(), _nccl()]
    if cfg is None:
        return checks
    models = {name: section for stage in stages_for(cfg) for name, section in stage.models(cfg).items()}
    checks += [_vllm(name, section) for name, section in models.items() if hasattr(section, "engine_options")]
    checks += [_hub(f"{name}.model", section) for name, section in models.items()]
    checks.append(_disk(cfg, root or cfg.root, bank_size))
    checks += _cluster(cfg)
    return checks


def _gpus() -> Check:
    try:
        import torch
    except ImportError:
        return Check("GPUs", "fail", "torch is not installed: `make setup` (or `make gpu-setup` on a GPU machine)")
    if not torch.cuda.is_available():
        built = f"torch {torch.__version__} " + (f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "(a CPU build)")
        return Check("GPUs", "warn", f"none visible to {built}; CPU-only configs (configs/offline.yaml) still run")
    names = [f"{torch.cuda.get_device_name(i)} ({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
             for i in range(torch.cuda.device_count())]
    return Check("GPUs", "ok", f"{len(names)}: {', '.join(names)}; torch {torch.__version__}, CUDA {torch.version.cuda}")


def _nccl() -> Check:
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        return Check("NCCL", "skip", "no torch")
    if not torch.cuda.is_available():
        return Check("NCCL", "skip", "no GPU: training uses gloo")
    if not dist.is_nccl_available():
        return Check("NCCL", "fail", "this torch has no NCCL: multi-GPU training cannot start; install a CUDA build of torch")
    version = ".".join(str(v) for v in torch.cuda.nccl.version())
    return Check("NCCL", "ok", f"NCCL {version}")


def _vllm(name: str, c) -> Check:
    """vLLM importable where the actors of a section with vLLM engine options (the captions') will import it."""
    if c.backend != "vllm":
        return Check("vLLM", "skip", f"{name}.backend is {c.backend!r}")
    python = os.path.abspath(os.path.expanduser(c.python)) if c.python else sys.executable
    if not Path(python).exists():
        return Check("vLLM", "fail", f"{name}.python {c.python} does not exist: `make gpu-setup` builds it")
    command = [python, "-c", "import vllm, torch; print(vllm.__version__, torch.__version__, torch.cuda.is_available())"]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return Check("vLLM", "fail", f"`import vllm` under {command[0]} took over 300 s")
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["?"])[-1][:200]
        return Check("vLLM", "fail", f"`import vllm` fails under {command[0]}: {last}")
    vllm_version, torch_version, cuda = out.stdout.split()
    where = f"vllm {vllm_version} with torch {torch_version} under {command[0]}"
    if cuda != "True" and c.num_gpus:
        return Check("vLLM", "warn", f"{where}, but that torch sees no GPU")
    return Check("vLLM", "ok", where)


def _hub(field: str, section) -> Check:
    from ..tiny_models import resolve_model

    model = section.model
    if os.path.exists(resolve_model(model)) or model.startswith(("/", "./", "../", "~", "file://", "tiny/")):
        return Check(field, "skip", f"{model} is local")
    from huggingface_hub import get_token
    from huggingface_hub.constants import HF_HUB_CACHE

    cached = Path(HF_HUB_CACHE) / f"models--{model.replace('/', '--')}"
    token = "a token is set" if get_token() else "no token (HF_TOKEN or `huggingface-cli login`; gated models need one)"
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(model, revision=section.load_revision or "main", timeout=10)
        return Check(field, "ok", f"{model} is on the hub and reachable; {token}; cache {HF_HUB_CACHE}")
    except Exception as exc:
        why = " ".join(str(exc).split())[:160]
    if cached.is_dir():
        return Check(field, "warn", f"the hub did not answer ({why}), but {cached} holds {model}: set HF_HUB_OFFLINE=1")
    return Check(field, "fail", f"{model}: the hub did not answer ({why}) and {HF_HUB_CACHE} does not hold it; {token}")


def _disk(cfg, root: str, bank_size: int | None) -> Check:
    if "://" in root and not root.startswith("file://"):
        return Check("disk", "skip", f"the root {root} is an object store")
    from .estimates import plan_run

    where = Path(root.removeprefix("file://")).expanduser().resolve()
    existing = next(p for p in (where, *where.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    try:
        if bank_size is None:
            from .sizing import bank_concepts

            bank_size = bank_concepts(cfg)
        needed = plan_run(cfg, bank_size).stored_bytes
    except Exception as exc:  # the bank is not here yet: free space alone
        return Check("disk", "warn", f"{free / 1e9:,.0f} GB free under {existing}; no plan ({' '.join(str(exc).split())[:120]})")
    state: State = "ok" if free > 1.2 * needed else "fail"
    return Check("disk", state, f"{free / 1e9:,.0f} GB free under {existing}; the plan stores about {needed / 1e9:,.1f} GB")


def _cluster(cfg) -> list[Check]:
    """Each stage's pools against the Ray the run would use: the cluster at RAY_ADDRESS, or a
    local Ray of this machine's CPUs and GPUs (not started: the same count a run's would have)."""
    from ..compute.resources import ClusterOffer, shortfall, verdict
    from ..pipeline import stages_for

    if os.environ.get("RAY_ADDRESS"):
        import ray

        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
        offer, where = ClusterOffer.of_ray(), f"the Ray cluster at {os.environ['RAY_ADDRESS']}"
    else:
        gpus = 0
        try:
            import torch

            gpus = torch.cuda.device_count()
        except ImportError:
            pass
        offer, where = ClusterOffer(({"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)},)), "a local Ray of this machine"
    checks = []
    for stage in stages_for(cfg):
        found = [(spec, verdict(spec, offer)) for spec in stage.workers(cfg)]
        if not found:
            continue
        bad = [spec for spec, v in found if v == "never"]
        if bad:
            checks.append(Check(f"Ray: {stage.name}", "fail", shortfall(stage.name, bad[0], offer)))
        elif any(v == "scale-up" for _, v in found):
            checks.append(Check(f"Ray: {stage.name}", "warn", f"fits once the autoscaler adds nodes ({where})"))
        else:
            checks.append(Check(f"Ray: {stage.name}", "ok", f"fits {where}"))
    return checks
