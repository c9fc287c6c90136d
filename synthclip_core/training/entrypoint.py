"""``python -m synthclip_core.training.entrypoint --spec FILE``: fit a TrainSpec (as JSON) in
whatever Ray this process finds; for tools and tests. A run's train stage is launched with
``python -m synthclip_core train --root R --run-id ID`` instead.
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    from ..ray_runtime import ensure_ray
    from .fit import fit
    from .spec import TrainSpec

    ensure_ray()
    spec = TrainSpec.from_dict(json.loads(args.spec.read_text()))
    fit(spec, name=f"synthclip-{spec.run_ref.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
