"""A tiny open_clip model (``SynthCLIP-Tiny``, random weights, seeded) as an open_clip ``local-dir:``
folder: the offline scorer of best-of-k rendering. Untrained, so offline it ranks candidates by an
arbitrary but fixed rule; the code path is the one a real scorer takes."""

from __future__ import annotations

import json
from pathlib import Path


def build_tiny_clip(out_dir: Path, seed: int = 0, log=print) -> Path:
    import torch

    from ..clip_models import create_model, model_config

    torch.manual_seed(seed)
    model = create_model("SynthCLIP-Tiny")[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_config("SynthCLIP-Tiny"),
                                                               "preprocess_cfg": {}}, indent=1))
    torch.save(model.state_dict(), out_dir / "open_clip_pytorch_model.bin")
    log("  tiny open_clip scorer (SynthCLIP-Tiny, random weights)")
    return out_dir
