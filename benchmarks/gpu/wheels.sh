#!/usr/bin/env bash
# The wheels the GPU proof carries to a bare GPU machine (Python 3.12, x86-64; it has torch,
# transformers, huggingface_hub, safetensors, timm, regex, pillow, numpy, pyyaml): what our
# render, training-step and caption code imports beyond those. About 8.4 MB; the device tool
# carries the folder (`carry: ["benchmarks/gpu/wheels"]`, git-ignored).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$here/wheels" \
    diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 importlib_metadata==10.2.0 zipp
du -sh "$here/wheels"
