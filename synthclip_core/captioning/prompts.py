"""Caption prompt templates: named, versioned, extensible.

A template's name and version enter the caption ids and the caption stage's fingerprint, so
changing the wording of a template means bumping its version. A rewrite template (the rewrites
stage's) also names the caption to rewrite, as ``{caption}``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    text: str  # must contain "{concept}"; a rewrite template "{caption}" as well

    @property
    def key(self) -> str:
        return f"{self.name}@v{self.version}"

    @property
    def rewrites(self) -> bool:
        """Whether it asks to rewrite a caption (names ``{caption}``)."""
        return "{caption}" in self.text

    def render(self, concept: str, caption: str = "") -> str:
        return self.text.replace("{caption}", caption).replace("{concept}", concept)

    def identity(self) -> dict[str, str]:
        """What a fingerprint covers of a template: its name@version and the sha256 of its text."""
        return {"key": self.key, "sha256": hashlib.sha256(self.text.encode()).hexdigest()}

    def messages(self, concept: str, caption: str = "") -> list[dict[str, str]]:
        """The chat messages sent through the model's own chat template."""
        return [{"role": "user", "content": self.render(concept, caption)}]


# The SynthCLIP paper's instruction (arXiv 2402.01832, caption generation): a single caption of
# at most 15 words that includes and visually describes a scene around the concept.
SYNTHCLIP = PromptTemplate(
    name="synthclip",
    version=1,
    text=(
        "Your task is to write me an image caption that includes and visually describes a scene "
        "around a concept. Your concept is {concept}. Output one single grammatically correct "
        "caption that is no longer than 15 words. Do not output any notes, word counts, facts, "
        "etc. Output one single sentence only."
    ),
)

# The closed loop's prompt (stages/topup.py): the paper's, asking for the concept word for word, since
# a caption counts for a concept only where balancing's substring match finds it.
SYNTHCLIP_FOCUSED = PromptTemplate(
    name="synthclip-focused",
    version=1,
    text=(
        "Your task is to write me an image caption that names a concept word for word and visually describes a "
        "scene around it. Your concept is {concept}. Output one single grammatically correct caption that is no "
        "longer than 15 words. Do not output any notes, word counts, facts, etc. Output one single sentence only."
    ),
)

# The rewrites stage's prompt (stages/rewrites.py), after LaCLIP's: the same picture in other words,
# the concept kept word for word (a rewrite counts only where balancing's match still finds it).
SYNTHCLIP_REWRITE = PromptTemplate(
    name="synthclip-rewrite",
    version=1,
    text=(
        "Rewrite this image caption in other words: {caption} Keep the concept {concept} word for word, change "
        "the wording and the details of the scene. Output one single grammatically correct caption that is no "
        "longer than 15 words. Output one single sentence only."
    ),
)

_TEMPLATES: dict[str, PromptTemplate] = {t.name: t for t in (SYNTHCLIP, SYNTHCLIP_FOCUSED, SYNTHCLIP_REWRITE)}


def register_template(template: PromptTemplate) -> None:
    """Add a user template; its text must mention ``{concept}`` exactly where the concept goes."""
    if "{concept}" not in template.text:
        raise ConfigError(f"prompt template {template.name!r} has no '{{concept}}' placeholder")
    _TEMPLATES[template.name] = template


def rewrite_template(name: str, field: str = "rewrites.template") -> PromptTemplate:
    """The template ``name``, which must say where the caption to rewrite goes."""
    template = get_template(name)
    if not template.rewrites:
        raise ConfigError(f"{field}: template {name!r} has no '{{caption}}' placeholder, so it cannot say which "
                          f"caption to rewrite (the default is {SYNTHCLIP_REWRITE.name!r})")
    return template


def get_template(name: str) -> PromptTemplate:
    try:
        return _TEMPLATES[name]
    except KeyError:
        known = ", ".join(sorted(_TEMPLATES))
        raise ConfigError(f"unknown prompt template {name!r} (known: {known})") from None

