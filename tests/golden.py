"""The micro run's data outputs by stage version (``tests/fixtures/stage-outputs.json``): the guard
of the rule that a change to what a stage writes bumps the stage's version.

Refresh after bumping a version: ``python tests/golden.py ROOT RUN_ID`` on a finished micro run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from synthclip_core.pipeline import STAGES
from synthclip_core.store import RunStore

GOLDEN = Path(__file__).parent / "fixtures" / "stage-outputs.json"
DATA_STAGES = ("concepts", "captions", "balanced", "images", "shards")


def stage_outputs(store: RunStore) -> dict[str, dict]:
    """Each data stage's version and the sha256 of each Parquet and tar output it committed."""
    return {stage: {"version": STAGES[stage].version,
                    "outputs": {o: r["sha256"] for o, r in sorted(store.records(stage).items())
                                if o.endswith((".parquet", ".tar"))}}
            for stage in DATA_STAGES}


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(stage_outputs(RunStore(sys.argv[1], sys.argv[2])), indent=1, sort_keys=True) + "\n")
