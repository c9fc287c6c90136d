"""``python -m synthclip_core.training.entrypoint``: train one run, inside whatever Ray it finds.

A Ray job's command on a cluster (``--root``/``--run-id``: the run's train stage, in process), or
a bare spec (``--spec FILE``, a TrainSpec as JSON) for tools and tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="synthclip_core.training.entrypoint", description=__doc__)
    parser.add_argument("--root")
    parser.add_argument("--run-id")
    parser.add_argument("--spec", type=Path, help="a TrainSpec as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    from ..ray_runtime import ensure_ray

    ensure_ray()
    if args.spec:
        from .fit import fit
        from .spec import TrainSpec

        spec = TrainSpec.from_dict(json.loads(args.spec.read_text()))
        fit(spec, name=f"synthclip-{spec.run_ref.run_id}")
        return 0
    if not (args.root and args.run_id):
        parser.error("give --root and --run-id, or --spec")
    from ..run import RunRef, load_run
    from ..stages.train import train_in_process

    summary = train_in_process(load_run(RunRef(args.root, args.run_id)))
    print(summary.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
