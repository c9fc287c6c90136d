"""Zero-shot prompt templates: open_clip's named sets, or a file with one ``{}`` template a line."""

from __future__ import annotations

import fsspec

from ..errors import UserError

NAMED = ("openai", "simple")


def load_templates(name_or_file: str) -> list:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    if name_or_file == "openai":
        return list(OPENAI_IMAGENET_TEMPLATES)
    if name_or_file == "simple":
        return list(SIMPLE_IMAGENET_TEMPLATES)
    fs, path = fsspec.core.url_to_fs(name_or_file)
    if not fs.exists(path):
        raise UserError(f"templates must be one of {', '.join(NAMED)} or a file; {name_or_file} not found")
    lines = [ln.strip() for ln in fs.cat_file(path).decode().splitlines() if ln.strip()]
    bad = [n for n, ln in enumerate(lines, start=1) if "{}" not in ln]
    if not lines or bad:
        raise UserError(f"{name_or_file}: every line must be a template with {{}} for the class name (line {bad[:3] or 'none'})")
    return lines
