"""Fingerprints name content: what a run pins when it begins (docs/reliability.md, "Trust", point 8);
every test here failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthclip_core.storage.store import RunRef

REPO = Path(__file__).resolve().parents[1]


# -- 8. fingerprints cover what changes outputs: the inputs' content, pinned when a run begins -----

def _pinned(cfg):
    from synthclip_core.runs.pins import pin

    return pin(cfg)


def _changed(before, after) -> set[str]:
    from synthclip_core.pipeline import fingerprints

    a, b = fingerprints(before), fingerprints(after)
    return {s for s in a if a[s] != b[s]}


def _with(cfg, section: str, **update):
    return cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=update)})


@pytest.fixture
def micro_with_bank(tmp_path):
    from synthclip_core.pipeline import load_config

    bank = tmp_path / "bank.txt"
    bank.write_text("tench\ngoldfish\nsea lion\n")
    cfg = load_config(REPO / "configs" / "micro.yaml")
    return _with(cfg, "concepts", source=str(bank), limit=None), bank


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache that knows one model's ``main``, read offline as the hub's answer."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    refs = tmp_path / "hub" / "models--org--diffusion" / "refs"
    refs.mkdir(parents=True)

    def move_main(commit: str) -> None:
        (refs / "main").write_text(commit)

    move_main("1" * 40)
    return move_main


DOWNSTREAM = {"captions", "balanced", "images", "shards", "train", "eval"}  # micro.yaml: no card


def test_what_changes_outputs_changes_the_fingerprint_and_what_does_not_leaves_it(micro_with_bank, hub_cache, tmp_path):
    from synthclip_core.captioning.prompts import PromptTemplate, register_template
    from synthclip_core.fingerprint import model_identity

    cfg, bank = micro_with_bank
    pinned = _pinned(cfg)
    bank.write_text("tench\ngoldfish\nsea otter\n")  # the same URI, other concepts
    assert _changed(pinned, _pinned(cfg)) == {"concepts"} | DOWNSTREAM

    from synthclip_core.pipeline import fingerprints

    register_template(PromptTemplate("trust-test", 1, "Describe {concept}."))
    templated = _pinned(_with(cfg, "captions", template="trust-test"))
    before = fingerprints(templated)
    register_template(PromptTemplate("trust-test", 1, "Describe {concept} at night."))  # text changed, version not
    after = fingerprints(templated)
    assert {s for s in before if before[s] != after[s]} == DOWNSTREAM

    base = _pinned(cfg)
    assert _changed(base, _with(base, "captions", engine_options={"quantization": "fp8"})) == DOWNSTREAM
    assert _changed(base, _with(base, "captions", engine_options={"dtype": "bfloat16"})) == DOWNSTREAM
    assert _changed(base, _with(base, "train", num_workers=2)) == {"train", "eval"}
    assert _changed(base, _with(base, "train", loader_workers=3)) == {"train", "eval"}
    # purely operational: where and how fast, never what
    assert _changed(base, _with(base, "captions", num_actors=8, batch_size=3,
                                engine_options={"gpu_memory_utilization": 0.5, "enforce_eager": True})) == set()
    assert _changed(base, _with(base, "images", num_actors=4, batch_size=2, captions_per_partition=7)) == set()
    assert _changed(base, _with(base, "train", max_failures=9, checkpoint_every_steps=3, log_every_steps=1)) == set()

    single = tmp_path / "model.safetensors"
    single.write_bytes(b"weights v1")
    first = model_identity(str(single), None, scheme=2)
    single.write_bytes(b"weights v2")
    assert model_identity(str(single), None, scheme=2) != first

    on_hub = _with(cfg, "images", model="org/diffusion", revision=None)
    at_first = _pinned(on_hub)
    assert at_first.images.commit == "1" * 40
    hub_cache("2" * 40)  # main moved on the hub
    assert _changed(at_first, _pinned(on_hub)) == {"images", "shards", "train", "eval"}


def test_resume_refuses_a_changed_bank_and_loads_the_pinned_commit(micro_with_bank, hub_cache, tmp_path):
    from synthclip_core.errors import RunStateError
    from synthclip_core.runs.lifecycle import load_run, open_run

    cfg, bank = micro_with_bank
    cfg = _with(cfg, "images", model="org/diffusion", revision=None)
    ref = RunRef(str(tmp_path / "root"), "pinned")
    run = open_run(cfg, ref)
    hub_cache("2" * 40)
    assert load_run(ref, verify=True).config.images.commit == "1" * 40  # resume loads the commit the run began with
    assert open_run(cfg, ref).fingerprints == run.fingerprints  # `run` on its id continues it, at its commit
    assert open_run(cfg, RunRef(ref.root, "new")).config.images.commit == "2" * 40  # a new run takes main as it is now

    bank.write_text("tench\ngoldfish\nsea otter\n")
    for attempt in (lambda: load_run(ref, verify=True), lambda: open_run(cfg, ref)):
        with pytest.raises(RunStateError, match=r"pinned: the concept bank .*bank.txt changed since the run began"):
            attempt()


def test_a_continued_run_refuses_settings_that_change_its_outputs(micro_with_bank, tmp_path):
    from synthclip_core.captioning.prompts import PromptTemplate, register_template
    from synthclip_core.errors import RunStateError
    from synthclip_core.runs.lifecycle import load_run, open_run

    cfg, _ = micro_with_bank
    ref = RunRef(str(tmp_path / "root"), "r")
    open_run(cfg, ref)
    for section, update, stages in (("train", {"num_workers": 2}, "train, eval"),
                                    ("captions", {"engine_options": {"quantization": "awq"}}, "captions, balanced")):
        with pytest.raises(RunStateError, match=rf"made with another config or code \(stages changed: {stages}"):
            open_run(_with(cfg, section, **update), ref)
    continued = open_run(_with(cfg, "captions", num_actors=3, batch_size=5), ref)  # operational: reported, not taken
    assert continued.config.captions.num_actors == 1
    assert continued.ignored == ("captions.num_actors: 1 -> 3", "captions.batch_size: 32 -> 5")
    assert open_run(cfg, ref).ignored == ()

    register_template(PromptTemplate("trust-test-2", 1, "Draw {concept}."))
    ref2 = RunRef(ref.root, "t")
    open_run(_with(cfg, "captions", template="trust-test-2"), ref2)
    register_template(PromptTemplate("trust-test-2", 1, "Paint {concept}."))
    with pytest.raises(RunStateError, match=r"t: the code or models changed since it started \(stages: captions"):
        load_run(ref2, verify=True)


# -- trust round two, 6. models named by a string (a scorer, a classifier): by content or pinned commit --

def test_models_named_by_a_string_are_identified_by_content_or_a_pinned_commit(micro_with_bank, tmp_path, monkeypatch):
    import huggingface_hub.constants

    from synthclip_core.pipeline import fingerprints
    from synthclip_core.runs.pins import pin

    cfg, _ = micro_with_bank
    checkpoint, folder = tmp_path / "scorer.pt", tmp_path / "scorer"
    checkpoint.write_bytes(b"weights v1")
    folder.mkdir()
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"weights v1")
    for scorer, weights in ((f"SynthCLIP-Tiny:{checkpoint}", checkpoint), (str(folder), folder / "open_clip_pytorch_model.bin"),
                            (f"local-dir:{folder}", folder / "open_clip_pytorch_model.bin")):
        run = pin(_with(cfg, "images", best_of=2, scorer=scorer))
        before = fingerprints(run)["images"]
        weights.write_bytes(weights.read_bytes() + b" overwritten")  # the same name, other weights
        assert fingerprints(run)["images"] != before, scorer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    def hub_main(repo: str, commit: str) -> None:
        refs = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        (refs / "main").write_text(commit)

    hub_main("timm/vit_base_patch32_clip_224.openai", "1" * 40)
    hub_main("org/safety", "3" * 40)
    named = _with(_with(cfg, "images", best_of=2, scorer="ViT-B-32:openai"), "concepts",
                  safety=cfg.concepts.safety.model_copy(update={"classifier": "org/safety"}))
    first = pin(named)
    assert first.model_pins == {"images.scorer": {"model": "timm/vit_base_patch32_clip_224.openai", "commit": "1" * 40},
                                "concepts.safety.classifier": {"model": "org/safety", "commit": "3" * 40}}
    hub_main("timm/vit_base_patch32_clip_224.openai", "2" * 40)  # main moved on the hub
    hub_main("org/safety", "4" * 40)
    assert {"images", "concepts"} <= _changed(first, pin(named))  # a new run takes the new weights, named as such
    assert pin(named, like=first).model_pins == first.model_pins  # a continuing run keeps (and loads) its pins
