"""From an LLM's answer to a caption, with every fix and every rejection counted by reason.

Fixes keep the caption: surrounding quotes, a ``Caption:`` prefix, a trailing word count, a
preamble ("Here is a caption:" on its own line, "Sure! Here is one:" inline), or notes on further lines. Rejections keep the row with
an empty caption and a reason (``empty``, ``refusal``, ``note``, ``prompt_echo``, ``overlong``), so
the partition's stats say what was lost and why; balancing then drops those rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

REJECT_REASONS = ("empty", "refusal", "note", "prompt_echo", "overlong")

CHARS_PER_WORD = 15  # a caption longer than max_words * this is no caption, however it splits
_QUOTES = "\"'“”‘’`"
_PREFIX = re.compile(r"^(image\s+)?caption\s*(\d+\s*)?[:\-–]\s*", re.IGNORECASE)
_WORD_COUNT = re.compile(r"\s*[\(\[]\s*\d+\s+words?\s*[\)\]]\s*$", re.IGNORECASE)
_REFUSAL = re.compile(r"^(i'?m sorry|i am sorry|sorry,|i cannot|i can'?t|as an ai\b|i'?m unable|i am unable)", re.IGNORECASE)
_CHATTER = re.compile(r"^(sure|okay|ok|certainly|of course)\b[^:]{0,60}:\s*(?=\S)", re.IGNORECASE)  # "Sure! Here is one: ..."
_NOTE = re.compile(r"^(note|word count|\(note)\b", re.IGNORECASE)
# Fragments of the instruction that a caption never contains unless the model echoes the prompt.
_ECHO = ("your task is", "your concept is", "grammatically correct caption", "no longer than 15 words",
         "do not output any notes", "rewrite this image caption", "word for word")


@dataclass(frozen=True)
class CleanedCaption:
    caption: str  # "" when rejected
    reject: str | None = None
    fixes: tuple[str, ...] = field(default=())


def clean_caption(raw: str, max_words: int = 30) -> CleanedCaption:
    lines = [" ".join(line.split()) for line in raw.strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return CleanedCaption("", "empty")
    fixes: list[str] = []
    if len(lines) > 1 and lines[0].endswith(":") and not _PREFIX.match(lines[0] + " x"):
        lines = lines[1:]
        fixes.append("preamble")
    if len(lines) > 1:
        fixes.append("multi_line")
    text = lines[0]
    if _CHATTER.match(text):
        text = _CHATTER.sub("", text, count=1)
        fixes.append("preamble")
    if _PREFIX.match(text):
        text = _PREFIX.sub("", text, count=1)
        fixes.append("prefix")
    if _WORD_COUNT.search(text):
        text = _WORD_COUNT.sub("", text)
        fixes.append("word_count")
    unquoted = text.strip(_QUOTES + " ")
    if unquoted != text:
        fixes.append("quotes")
        text = unquoted
    reject = _reject_reason(text, max_words)
    return CleanedCaption("" if reject else text, reject, tuple(fixes))


def _reject_reason(text: str, max_words: int) -> str | None:
    if not text:
        return "empty"
    if _REFUSAL.match(text):
        return "refusal"
    if _NOTE.match(text):
        return "note"
    lowered = text.lower()
    if any(fragment in lowered for fragment in _ECHO):
        return "prompt_echo"
    if len(text.split()) > max_words or len(text) > max_words * CHARS_PER_WORD:  # also one endless "word"
        return "overlong"
    return None
