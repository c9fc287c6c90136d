"""The GPU proof script, end to end in its CPU mode (tiny shapes): every part measures what it
will measure on a GPU, through the same code, so a lent GPU's minutes are never lost to a bug."""

from __future__ import annotations

import json

from benchmarks.gpu import proof


def test_the_gpu_proof_runs_every_part_in_cpu_mode(tmp_path):
    results = proof.main(cpu=True, budget_s=900, out=tmp_path, keep=False)
    assert json.loads((tmp_path / "gpu_proof.json").read_text()) == results
    render, train, captions, options = (results[p] for p in ("render", "train", "captions", "render_options"))
    for part in (render, train, captions, options):
        assert "failed" not in part and "skipped" not in part, part
    batch = render["batches"]["2"]
    assert batch["ours_images_per_s"] > 0 and batch["plain_images_per_s"] > 0 and batch["image_problems"] == 0
    assert options["classic_attention"]["max_pixel_change"] <= 2  # the outputs an option must keep
    assert options["channels_last"]["speedup"] > 0
    assert options["torch_compile"] == {"skipped": "GPU only"}
    step = train["batches"]["8"]
    assert step["ours_samples_per_s"] > 0 and step["open_clip_samples_per_s"] > 0 and step["ratio"] > 0
    assert captions["prompts_per_s"] > 0 and captions["tokens_per_s"] > 0 and captions["model"] == "tiny-llama-shape"
