import pytest

from synthclip_core.captioning.prompts import PromptTemplate, get_template, register_template
from synthclip_core.errors import ConfigError


def test_paper_prompt_names_the_concept_and_constraints():
    text = get_template("synthclip").render("tench")
    assert "tench" in text and "15 words" in text and "one single sentence" in text.lower()
    assert get_template("synthclip").key == "synthclip@v1"


def test_user_templates_are_registered_and_checked():
    register_template(PromptTemplate("short", 1, "Describe {concept}."))
    assert get_template("short").messages("cat") == [{"role": "user", "content": "Describe cat."}]
    with pytest.raises(ConfigError):
        register_template(PromptTemplate("broken", 1, "no placeholder"))
    with pytest.raises(ConfigError, match="unknown prompt template"):
        get_template("nope")

