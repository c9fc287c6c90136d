"""``python -m synthclip_core STAGE --root R --run-id ID``: one stage of a run, in this process and
the Ray it finds, without Prefect. The command of a run's training as a Ray job on a cluster, and a
way to run or debug one stage by hand.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from .pipeline import STAGES

    parser = argparse.ArgumentParser(prog="python -m synthclip_core", description=__doc__)
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("--root", required=True)
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    from .runs.lifecycle import load_run
    from .stages.executor import execute
    from .storage.store import RunRef

    print(execute(load_run(RunRef(args.root, args.run_id)), args.stage).line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
