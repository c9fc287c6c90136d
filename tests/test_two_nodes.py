"""One run over a real two-node Ray cluster on this machine: a head and a second ``ray start`` node,
each with its own resources. Caption, render and training work spans both; the second node is
killed (its whole process tree, as a machine that loses power) mid-render and, after a new one has
joined, mid-training. Nothing committed is lost and the run completes.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from servers import free_port, kill_tree, ray_cluster_env, start_ray_node, wait_until

from synthclip_core.runs.verify import verify
from synthclip_core.storage.store import RunStore

REPO = Path(__file__).resolve().parents[1]
# the head declares a node dead after 3 missed 1 s health checks, not the default 30 s
FAST_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
              "RAY_health_check_failure_threshold": "3"}


def _config(path: Path) -> Path:
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    data["concepts"]["limit"] = 24  # 48 captions, all kept, one render partition each: a render of some seconds
    data["balanced"]["threshold"] = 100
    data["captions"]["num_actors"] = 2
    data["images"].update(num_actors=2, captions_per_partition=1)
    data["train"].update(num_workers=2, placement="SPREAD", epochs=6, samples_per_epoch=64, max_failures=3,
                         log_every_steps=1)
    path.write_text(yaml.safe_dump(data))
    return path


def _nodes(records: dict) -> set[str]:
    return {r["worker"]["node_id"] for r in records.values() if "node_id" in r.get("worker", {})}


@pytest.mark.slow  # about 150 s: over what the default suite's 45 minutes leave
def test_a_run_spans_two_nodes_and_survives_losing_one_mid_render_and_mid_training(engine, tmp_path):
    token, port = secrets.token_hex(32), free_port()
    env = ray_cluster_env(token, **FAST_DEATH)
    address = f"127.0.0.1:{port}"
    head = start_ray_node(env, f"--port={port}", "--num-cpus=3", "--num-gpus=0", "--include-dashboard=true",
                          "--dashboard-host=127.0.0.1", f"--dashboard-port={free_port()}",
                          f"--temp-dir={tempfile.mkdtemp(prefix='rc2-', dir='/tmp')}", head=True)
    second: list[subprocess.Popen] = []

    def join() -> None:
        second.append(start_ray_node(env, "--num-cpus=2", "--num-gpus=0", address=address))

    store = RunStore(str(tmp_path), "two-nodes")
    kills: dict[str, int] = {}
    stop = threading.Event()

    def kill_second_node_twice() -> None:
        while not stop.is_set() and "render" not in kills:
            done = [o for o in store.committed("images") if o.startswith("part-")]
            # both nodes have rendered (an actor may start later on one), partitions are left
            if len(_nodes(store.records("images", done))) >= 2 and store.completion("images") is None:
                kill_tree(second[-1])
                kills["render"] = len(done)
                join()  # a new machine takes its place, so training spans two nodes again
            time.sleep(0.05)
        while not stop.is_set() and "train" not in kills:
            if "checkpoints/epoch_1.pt" in store.committed("train") and (store.live("train") or {}).get("step", 0) >= 20:
                kill_tree(second[-1])
                kills["train"] = store.live("train")["step"]
            time.sleep(0.05)

    try:
        wait_until(lambda: head.poll() is None and _ray_nodes(env, address) >= 1, "the Ray head", timeout=120)
        join()
        wait_until(lambda: _ray_nodes(env, address) == 2, "the second Ray node", timeout=120)
        killer = threading.Thread(target=kill_second_node_twice, daemon=True)
        killer.start()
        result = subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", str(_config(tmp_path / "two-nodes.yaml")), "--root", str(tmp_path),
             "--run-id", "two-nodes"], cwd=REPO, env={**env, "RAY_ADDRESS": address, "COLUMNS": "200"},
            capture_output=True, text=True, timeout=900)
        stop.set()
        killer.join()
    finally:
        for proc in [*second, head]:
            kill_tree(proc)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert set(kills) == {"render", "train"}, kills
    plan = [o for o in store.completion("images").outputs if o.startswith("part-")]
    assert kills["render"] < len(plan)  # the node went while partitions were left to render
    assert len(_nodes(store.records("captions"))) == 2 and len(_nodes(store.records("images"))) >= 2
    first_epoch = store.record("train", "checkpoints/epoch_1.pt")["worker"]
    assert first_epoch["world_size"] == 2 and len(set(first_epoch["nodes"])) == 2  # training spanned both nodes
    assert store.completion("eval") is not None and not any(store.failed_all().values())
    check = verify(store)
    assert check.ok and not check.orphans and not check.temporaries


def _ray_nodes(env: dict, address: str) -> int:
    """Alive nodes of the cluster, asked from a fresh process (this one has its own local Ray)."""
    code = f"import ray; ray.init(address={address!r}, log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
