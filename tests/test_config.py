from pathlib import Path

import pytest

from synthclip_core.errors import ConfigError
from synthclip_core.pipeline import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["offline", "micro", "synthci-30m"])
def test_presets_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.name == name


def test_paper_preset_holds_the_paper_recipe():
    cfg = load_config(CONFIGS / "synthci-30m.yaml")
    assert (cfg.captions.temperature, cfg.captions.top_p) == (0.7, 0.95)
    assert (cfg.captions.presence_penalty, cfg.captions.frequency_penalty) == (1.0, 1.0)
    assert (cfg.images.scheduler, cfg.images.steps, cfg.images.guidance_scale) == ("ddim", 50, 2.0)
    assert (cfg.images.height, cfg.images.stored_size) == (512, 256)
    t = cfg.train
    assert (t.model, t.global_batch_size, t.lr, t.weight_decay, t.epochs) == ("ViT-B-16", 4096, 5e-4, 0.5, 40)
    assert (t.beta1, t.beta2, t.min_lr, t.warmup_epochs) == (0.9, 0.98, 1e-5, 1)


def test_every_field_has_a_description():
    from synthclip_core.pipeline import RunConfig

    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(RunConfig)


def test_unknown_key_names_the_field_and_file(tmp_path):
    text = (CONFIGS / "micro.yaml").read_text().replace("  per_concept: 2", "  per_concept: 2\n  temprature: 0.5")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "captions.temprature: unknown key" in str(err.value)


def test_invalid_value_names_the_field(tmp_path):
    text = (CONFIGS / "micro.yaml").read_text().replace("threshold: 2", "threshold: -3")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"balanced\.threshold"):
        load_config(path)


def test_broken_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
