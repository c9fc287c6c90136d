"""Pre-emption costs nothing but the minutes on the node, on a real two-node Ray on this machine: a
pool whose partitions may not be retried at all (``max_retries=0``) completes when its second node
is killed mid-work (the partition lost there is queued again, no try used, and its minutes are a
``lost`` spend record), and when that node is drained with a deadline (nothing begins there after
the notice, what runs there commits, the actor moves)."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from faults import copy_run
from servers import free_port, kill_tree, ray_cluster_env, start_ray_node, wait_until

from synthclip_core.storage.ledger import spend_records
from synthclip_core.storage.store import RunStore

REPO = Path(__file__).resolve().parents[1]
FAST_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
              "RAY_health_check_failure_threshold": "3"}
ITEMS, SECONDS = 10, 2.0

# The driver: one pool over the cluster, each actor a whole node's CPU, no partition retried.
DRIVER = """
import json, sys, ray
from synthclip_core.compute.pool import run_pool
from synthclip_core.compute.resources import PoolSpec
from synthclip_core.stages.stage import WorkItem
from synthclip_core.storage.store import RunRef
from pool_work import Slow

ray.init(log_to_driver=False)
second = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "second" in n["Resources"])
print(json.dumps({"second": second}), flush=True)
ref = RunRef(sys.argv[1], "pool")
items = [WorkItem("pool", f"out-{i:02d}", "f", 1) for i in range(int(sys.argv[2]))]
spec = PoolSpec(count=2, max_retries=0, resources=json.loads(sys.argv[4]))
result = run_pool("pool", ref, spec, Slow, (float(sys.argv[3]), ref.as_dict()), items)
print(json.dumps({"records": sorted(result.records), "failures": result.failures, "restarts": result.actor_restarts,
                  "lost": result.lost_with_nodes, "moved": result.moved_off_draining}), flush=True)
"""


def two_node_pool(tmp_path: Path, on_second_node_commit, second_cpus: int = 1, resources: dict | None = None,
                  wait_s: float = 1800) -> tuple[dict, str, RunStore]:
    """Run the driver on a fresh head + second node; call ``on_second_node_commit(env, address, second,
    process, join)`` once a partition made on the second node is committed (``join()`` starts another
    node like the second). Returns (result, second node id, store)."""
    token, port = secrets.token_hex(32), free_port()
    env = ray_cluster_env(token, **FAST_DEATH)
    address = f"127.0.0.1:{port}"
    head = start_ray_node(env, f"--port={port}", "--num-cpus=1", "--num-gpus=0",
                          f"--temp-dir={tempfile.mkdtemp(prefix='rp-', dir='/tmp')}", head=True)
    nodes: list[subprocess.Popen] = []
    store = RunStore(str(tmp_path), "pool")

    def join() -> None:
        nodes.append(start_ray_node(env, f"--num-cpus={second_cpus}", "--num-gpus=0", '--resources={"second": 1}',
                                    address=address))

    try:
        wait_until(lambda: head.poll() is None and _nodes(env, address) >= 1, "the Ray head", timeout=120)
        join()
        wait_until(lambda: _nodes(env, address) == 2, "the second Ray node", timeout=120)
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), str(ITEMS), str(SECONDS), json.dumps(resources or {})],
                                  cwd=REPO, env={**env, "RAY_ADDRESS": address, "SYNTHCLIP_CAPACITY_WAIT_S": str(wait_s)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        second_id = json.loads(driver.stdout.readline())["second"]
        wait_until(lambda: any(r.get("node") == second_id for r in store.records("pool").values()),
                   "a partition committed on the second node", timeout=180)
        on_second_node_commit(env, address, second_id, nodes[0], join)
        out, err = driver.communicate(timeout=300)
    finally:
        for proc in [*nodes, head]:
            kill_tree(proc)
    assert driver.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1]), second_id, store


def _nodes(env: dict, address: str) -> int:
    code = f"import ray; ray.init(address={address!r}, log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    return int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else 0


def test_a_node_killed_mid_work_loses_no_partition_a_try(tmp_path):
    result, second, store = two_node_pool(tmp_path, lambda env, address, node, proc, join: kill_tree(proc))
    assert result["failures"] == {} and result["records"] == [f"out-{i:02d}" for i in range(ITEMS)]
    assert result["lost"] >= 1 and result["restarts"] == 0  # queued again without a try; not an actor failure
    lost = [d for d in spend_records(store, "pool") if d["kind"] == "lost"]
    assert lost and all(d["node"] == second and d["held"]["seconds"] > 0 for d in lost)  # its minutes are spent
    assert not store.failed("pool")


def test_a_drained_node_begins_nothing_after_the_notice_and_what_runs_there_commits(tmp_path):
    noticed: list[float] = []

    def drain(env, address, node, proc, join) -> None:
        subprocess.run([str(Path(sys.executable).parent / "ray"), "drain-node", f"--address={address}", f"--node-id={node}",
                        "--reason=DRAIN_NODE_REASON_PREEMPTION", "--reason-message=spot capacity reclaimed",
                        "--deadline-remaining-seconds=120"], env=env, check=True, capture_output=True, timeout=60)
        noticed.append(time.time())

    result, second, store = two_node_pool(tmp_path, drain)
    assert result["failures"] == {} and result["records"] == [f"out-{i:02d}" for i in range(ITEMS)]
    records = store.records("pool")
    there = [r for r in records.values() if r["node"] == second]
    assert there and all(r["began"] < noticed[0] for r in there), (noticed, there)  # nothing began there after it
    assert len(there) < ITEMS and result["moved"] >= 1 and result["lost"] == 0 and result["restarts"] == 0


def test_a_pool_whose_only_node_went_waits_for_capacity_and_goes_on_when_it_comes_back(tmp_path):
    """Every actor needs the second node's resource: when that node dies none can be placed, the
    pool waits (bounded) and says so, and a node that joins 15 s later lets it finish."""
    back: list[float] = []

    def kill_then_join(env, address, node, proc, join) -> None:
        kill_tree(proc)
        time.sleep(15)
        join()
        back.append(time.time())

    result, second, store = two_node_pool(tmp_path, kill_then_join, second_cpus=2, resources={"second": 0.5}, wait_s=120)
    assert result["failures"] == {} and result["records"] == [f"out-{i:02d}" for i in range(ITEMS)]
    assert result["lost"] >= 1 and result["restarts"] == 0
    after = [r for r in store.records("pool").values() if r["began"] > back[0]]
    assert after and all(r["node"] != second for r in after)  # made on the node that came back


def test_training_checkpoints_at_a_notice_that_leaves_time_for_it(micro_reference, tmp_path):
    """Ray Train asks every rank for a pre-emption notice; here the notice is handed in as Ray's own
    ``PreemptionInfo`` (no cluster reclaims nodes on this machine), at the second of four steps."""
    from ray.train import PreemptionInfo

    from synthclip_core.runs.lifecycle import load_run
    from synthclip_core.stages.train import train_spec
    from synthclip_core.storage.store import RunRef
    from synthclip_core.training.loop import plain_rank, train

    reference, _ = micro_reference
    for name, seconds_left, expected in (("roomy", 120, ["metrics/step_000000002.jsonl", "metrics/step_000000004.jsonl"]),
                                          ("too-late", -1, ["metrics/step_000000004.jsonl"])):
        copy = copy_run(reference, tmp_path / name, forget=("train", "eval"))
        spec = asdict(train_spec(load_run(RunRef(str(tmp_path / name), copy.run_id))))
        spec["train"]["log_every_steps"] = 1
        asked: list[float] = []

        def notice(seconds_left=seconds_left):
            asked.append(time.time())
            deadline = int((time.time() + seconds_left) * 1000)
            return PreemptionInfo(deadline_ms=deadline, preempted_node_to_ranks={"node": [0]}) if len(asked) >= 2 else None

        train(spec, replace(plain_rank(), notice=notice))
        assert sorted(o for o in copy.committed("train") if o.startswith("metrics/")) == expected, name
        assert "checkpoints/epoch_1.pt" in copy.committed("train")


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
