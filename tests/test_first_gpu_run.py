"""A first GPU run as a researcher starts it: ``synthclip plan`` and ``synthclip doctor`` before
any work, run as the user runs them (a process of their own)."""

from __future__ import annotations

from commands import one_line_error, synthclip

OFFLINE_HUB = {"HF_HUB_OFFLINE": "1"}


def test_plan_of_the_one_node_preset_prints_counts_asks_and_costs():
    result = synthclip("plan", "configs/synthci-1node.yaml", "--bank-size", "500000")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "synthci-1node: target 1,000,000 pairs:" in out and "training pairs" in out
    assert "8 x {CPU: 1, GPU: 1}" in out and "8 x {CPU: 8, GPU: 1}" in out  # no node-group resources on one machine
    assert "GPU-hours" in out and "under the root (disk)" in out
    assert "No pretrained weights" not in result.stderr


def test_plan_without_its_bank_says_which_file_and_how_to_go_on():
    result = synthclip("plan", "configs/synthci-1node.yaml")
    one_line_error(result, "metaclip/metadata.json", "--bank-size N")


def test_doctor_on_a_cpu_machine_says_what_the_gpu_preset_lacks():
    result = synthclip("doctor", "configs/synthci-1node.yaml", "--bank-size", "500000", env=OFFLINE_HUB)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    out = " ".join(result.stdout.split())
    assert "GPUs" in out and "none visible" in out
    assert "captions.python .venv-vllm-gpu/bin/python does not exist: `make gpu-setup` builds it" in out
    assert "mistralai/Mistral-7B-Instruct-v0.2: the hub did not answer" in out
    assert "(captions.num_actors, captions.num_gpus); no node offers GPU" in out
    assert "(train.num_workers, train.use_gpu, train.cpus_per_worker)" in out


def test_doctor_passes_the_offline_profile_here():
    result = synthclip("doctor", "configs/offline.yaml", env=OFFLINE_HUB)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    out = " ".join(result.stdout.split())
    for stage in ("captions", "balanced", "images", "train", "eval"):
        assert f"ok Ray: {stage}: fits a local Ray of this machine" in out, out
