"""Never a silent hang: what a stage asks of Ray is set against the cluster before it starts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

from synthclip_core.compute.resources import ClusterOffer, NodeGroup, PoolSpec, ensure_room, groups_left, verdict, workers_fitting
from synthclip_core.errors import ConfigError
from synthclip_core.pipeline import config_from_dict
from synthclip_core.runs.lifecycle import open_run
from synthclip_core.storage.store import RunRef

REPO = Path(__file__).resolve().parents[1]
GPU_NODE = {"CPU": 16.0, "GPU": 8.0, "memory": 1e11}


# -- the arithmetic, on described clusters ---------------------------------------------------------
def test_workers_fit_per_node_not_over_the_sum():
    nodes = ({"CPU": 3.0, "GPU": 1.0}, {"CPU": 3.0, "GPU": 1.0})
    assert workers_fitting({"CPU": 2.0}, nodes) == 2  # 6 CPUs in all, but 2 of each node's 3 per worker
    assert workers_fitting({"CPU": 1.0, "GPU": 1.0}, nodes) == 2
    assert workers_fitting({"GPU": 0.5}, nodes) == 4
    assert workers_fitting({"caption_gpu": 1.0}, nodes) == 0


def test_verdicts_with_and_without_an_autoscaler():
    one_node = ClusterOffer((GPU_NODE,))
    assert verdict(PoolSpec(count=8, num_gpus=1), one_node) == "fits"
    assert verdict(PoolSpec(count=9, num_gpus=1), one_node) == "never"
    assert verdict(PoolSpec(count=2, resources={"render_gpu": 1}), one_node) == "never"
    # tasks queue: one that fits is enough
    assert verdict(PoolSpec(count=64, num_cpus=1, kind="tasks"), one_node) == "fits"
    render_group = NodeGroup({"CPU": 16.0, "GPU": 8.0, "render_gpu": 8.0}, more=2)
    scaling = ClusterOffer((GPU_NODE,), (render_group,))
    assert verdict(PoolSpec(count=16, num_gpus=1, resources={"render_gpu": 1}), scaling) == "scale-up"
    assert verdict(PoolSpec(count=17, num_gpus=1, resources={"render_gpu": 1}), scaling) == "never"
    unlimited = ClusterOffer((GPU_NODE,), (NodeGroup(render_group.resources, more=None),))
    assert verdict(PoolSpec(count=1000, num_gpus=1, resources={"render_gpu": 1}), unlimited) == "scale-up"
    # a remote cluster that publishes no node groups (KubeRay groups from zero) may still grow: wait, bounded
    remote = ClusterOffer(({"CPU": 4.0},), may_grow=True)
    assert verdict(PoolSpec(count=8, num_gpus=1, resources={"caption_gpu": 1}), remote) == "scale-up"
    assert "it may add nodes it does not describe" in remote.describe()


def test_a_shortfall_names_the_fields_and_what_the_cluster_offers():
    from synthclip_core.training.config import TrainConfig
    from synthclip_core.training.fit import trainer_pool

    spec = trainer_pool(TrainConfig(model="ViT-B-16", epochs=1, global_batch_size=64, num_workers=32, cpus_per_worker=8,
                                    use_gpu=True, ray_resources={"train_gpu": 1}))
    with pytest.raises(ConfigError) as caught:
        ensure_room("train", [spec], lambda: ClusterOffer((GPU_NODE,)))
    line = str(caught.value)
    assert "\n" not in line
    assert "32 training worker(s) at once, each {CPU: 8, GPU: 1, train_gpu: 1}" in line
    assert "train.num_workers, train.use_gpu, train.cpus_per_worker, train.ray_resources" in line
    assert "no node offers train_gpu" in line and "1 node(s) with CPU 16, GPU 8" in line and "memory" not in line


def test_the_wait_for_an_autoscaler_is_visible_and_bounded(caplog):
    from synthclip_core.stages.common import model_pool

    cfg = config_from_dict({**yaml.safe_load((REPO / "configs" / "micro.yaml").read_text()),
                            "images": {"model": "tiny/sd", "num_actors": 16, "num_gpus": 1, "ray_resources": {"render_gpu": 1}}})
    spec = model_pool(cfg, "images")
    group = NodeGroup({"CPU": 16.0, "GPU": 8.0, "render_gpu": 8.0}, more=2)
    grown = {"CPU": 16.0, "GPU": 8.0, "render_gpu": 8.0}
    offers = iter([ClusterOffer((GPU_NODE,), (group,)), ClusterOffer((GPU_NODE, grown), (NodeGroup(group.resources, 1),)),
                   ClusterOffer((GPU_NODE, grown, grown))])
    with caplog.at_level("INFO", logger="synthclip.resources"):
        ensure_room("images", [spec], lambda: next(offers), wait_s=60, poll_s=0)
    assert sum("waiting for the autoscaler" in r.getMessage() for r in caplog.records) == 2
    stuck = ClusterOffer((GPU_NODE,), (group,))
    with pytest.raises(ConfigError, match=r"waited \d+ s for the autoscaler .*images.num_actors, images.num_gpus, images.ray_resources"):
        ensure_room("images", [spec], lambda: stuck, wait_s=0.05, poll_s=0.01)


# -- on a real local Ray (2 CPUs, 2 logical GPUs) -------------------------------------------------
def _run(tmp_path, run_id: str, **sections):
    data = yaml.safe_load((REPO / "configs" / "micro.yaml").read_text())
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return open_run(config_from_dict(data), RunRef(str(tmp_path), run_id))


def _within(seconds: float, call) -> BaseException | None:
    """Run ``call`` in a thread; what it raised, or a failure if it did not end in ``seconds``."""
    raised: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(call, raised), daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {time.monotonic() - started:.0f} s: a silent hang"
    return raised[0] if raised else None


def _catch(call, raised: list) -> None:
    try:
        call()
    except BaseException as exc:  # handed to the test's thread
        raised.append(exc)


def test_a_custom_resource_no_node_offers(ray_local, tmp_path):
    run = _run(tmp_path, "custom", images={"ray_resources": {"render_gpu": 1}})
    error = _within(30, lambda: ensure_room("images", run.stage("images").workers(run.config)))
    assert isinstance(error, ConfigError) and "no node offers render_gpu" in str(error), error


def test_more_trainer_workers_than_the_cluster_hosts_stops_the_run_before_any_stage(ray_local, tmp_path):
    from synthclip_core.stages.executor import check_cluster

    run = _run(tmp_path, "trainers", train={"num_workers": 4, "global_batch_size": 8})
    with pytest.raises(ConfigError, match=r"train: asks for 4 training worker\(s\) at once.*the cluster hosts 2"):
        check_cluster(run)
    assert not run.store.committed_all().get("concepts")  # nothing was started
    fine = _run(tmp_path, "fine")
    check_cluster(fine)  # the micro config fits this Ray
    assert verdict(PoolSpec(count=2, num_gpus=1), ClusterOffer.of_ray()) == "fits"


def test_a_node_is_counted_in_its_own_group_only():
    """Trust round two, 7: {CPU 4, GPU 1} x 2 and {CPU 8, GPU 2} x 1 with the big node up host
    four one-GPU actors (two on it, one on each small node still to come)."""
    small, big = {"CPU": 4.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 2.0}
    up = ({"CPU": 8.0, "GPU": 2.0, "memory": 3e10, "node:10.0.0.2": 1.0},)
    groups = groups_left([(small, 2), (big, 1)], up)
    assert groups == (NodeGroup(small, more=2),)  # the big node is the big group's: it is full, the small one is not
    assert verdict(PoolSpec(count=4, num_gpus=1), ClusterOffer(up, groups)) == "scale-up"
    assert verdict(PoolSpec(count=5, num_gpus=1), ClusterOffer(up, groups)) == "never"
