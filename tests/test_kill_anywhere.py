"""Kill it anywhere and lose nothing: a seeded SIGKILL of a caption or render actor, the flow
process or a training worker, then a resume, ends with exactly the reference run's outputs.

The default suite runs one trial per target; ``pytest -m slow tests/test_kill_anywhere.py`` runs
20 more with targets and moments drawn from their seeds. Set ``SYNTHCLIP_FAULT_LOG`` to a file to
collect each trial's figures (one JSON line per trial) for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from faults import Fault, compare, run_trial

from synthclip_core.storage.store import RunStore

MICRO = Path(__file__).resolve().parents[1] / "configs" / "micro.yaml"


@pytest.fixture
def reference(micro_reference):
    return micro_reference


def _trial(reference, tmp_path, fault: Fault):
    ref_store, _ = reference
    run_id = f"faulty-{fault.seed}"
    trial = run_trial(MICRO, tmp_path, run_id, fault)
    trial.problems += compare(ref_store, RunStore(str(tmp_path), run_id))
    if os.environ.get("SYNTHCLIP_FAULT_LOG"):
        with open(os.environ["SYNTHCLIP_FAULT_LOG"], "a") as log:
            log.write(json.dumps(trial.as_dict()) + "\n")
    return trial


@pytest.mark.parametrize("seed,target", [  # the default tier kills the flow (a killed actor: test_actor_faults); slow, all four
    pytest.param(1, "caption-actor", marks=pytest.mark.slow), pytest.param(2, "render-actor", marks=pytest.mark.slow),
    (3, "flow"), pytest.param(4, "training", marks=pytest.mark.slow)])
def test_a_kill_then_resume_gives_the_reference_outputs(reference, tmp_path, seed, target):
    trial = _trial(reference, tmp_path, Fault.draw(seed, reference[1], target))
    assert trial.hit, f"{trial.fault} found nothing to kill"
    assert trial.problems == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_seeded_kills_anywhere(reference, tmp_path, seed):
    trial = _trial(reference, tmp_path, Fault.draw(seed, reference[1]))
    assert trial.problems == []
