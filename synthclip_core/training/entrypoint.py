"""``python -m synthclip_core.training.entrypoint --spec FILE``: fit a TrainSpec (as JSON) in
whatever Ray this process finds; with ``--no-ray`` in this process alone, or as one rank of
``torchrun --nproc-per-node N -m synthclip_core.training.entrypoint --no-ray``. For tools,
benchmarks and tests; a run's train stage is launched with ``python -m synthclip_core train
--root R --run-id ID`` instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="synthclip_core.training.entrypoint", description=__doc__)
    parser.add_argument("--spec", type=Path, required=True, help="a TrainSpec as JSON")
    parser.add_argument("--no-ray", action="store_true", help="plain torch: this process (or torchrun's ranks), no Ray")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    from .fit import fit, fit_here
    from .spec import TrainSpec

    spec = TrainSpec.from_dict(json.loads(args.spec.read_text()))
    if args.no_ray:
        fit_here(spec)
        return 0
    from ..compute.ray_runtime import ensure_ray

    ensure_ray()
    fit(spec, name=f"synthclip-{spec.run_ref.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
