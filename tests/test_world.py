"""The offline world's signatures: deterministic, built from the concept's own tokens, the same
token ids the tiny pipeline's tokenizer gives."""

from __future__ import annotations

import numpy as np

from synthclip_core.tiny_models import world


def test_a_signature_is_the_glyphs_of_the_concepts_non_filler_tokens():
    shark = world.tokens("shark")[0]
    for concept in ("tiger shark", "great white shark"):
        assert shark in world.drawn_tokens(concept)
    assert world.drawn_tokens("a photo of the lake") == []  # scene words draw nothing
    assert world.drawn_tokens("a blurry") == []
    sig = world.signature("goldfish")
    assert sig.shape == (3, 4, 4) and np.array_equal(sig, world.signature("Goldfish"))
    painted = {cell for cell, _ in world.glyph(world.tokens("goldfish")[0])}
    assert {i for i in range(16) if np.abs(sig.reshape(3, 16)[:, i]).sum() > 0} == painted
    assert not world.signature("").any()


def test_every_bank_concept_has_its_own_signature():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    signatures = {world.signature(c).tobytes() for c in IMAGENET_CLASSNAMES}
    assert len(signatures) >= 0.99 * len(IMAGENET_CLASSNAMES)


def test_world_tokens_are_the_pipeline_tokenizers_ids(tmp_path):
    from transformers import CLIPTokenizer

    from synthclip_core.tiny_models.diffusion import write_clip_tokenizer

    write_clip_tokenizer(tmp_path)
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    for text in ("great white shark", "Granny Smith", "hen-of-the-woods"):
        assert tokenizer(text, add_special_tokens=False).input_ids == world.tokens(text)


def test_a_cached_tiny_model_of_an_older_build_is_not_taken_as_built(tmp_path, monkeypatch):
    from synthclip_core import tiny_models

    monkeypatch.setenv("SYNTHCLIP_MODELS_DIR", str(tmp_path))
    for name in ("safety", "sd"):  # a model still at build 1, and one at build 2
        (tmp_path / f"tiny-{name}").mkdir()
        (tmp_path / f"tiny-{name}" / "BUILT").write_text("ok\n")  # what version 1 builds wrote
    assert tiny_models.VERSIONS["safety"] == 1 and tiny_models.VERSIONS["sd"] == 2
    assert tiny_models.is_built("safety") and not tiny_models.is_built("sd")
    (tmp_path / "tiny-sd" / "BUILT").write_text(f"version {tiny_models.VERSIONS['sd']}\n")
    assert tiny_models.is_built("sd")


def test_a_config_names_the_tiny_models_a_first_run_builds():
    from pathlib import Path

    from synthclip_core.pipeline import load_config
    from synthclip_core.tiny_models import named_in

    assert named_in(load_config(Path(__file__).parents[1] / "configs" / "offline.yaml")) == ["llm", "sd"]  # not the other five
    assert named_in({"a": ["tiny/clip", {"b": "tiny/llm"}], "c": "tiny/clip", "d": "tiny/nothing", "e": "org/llm"}) == ["clip", "llm"]
