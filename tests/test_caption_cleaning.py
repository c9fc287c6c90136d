import pytest

from synthclip_core.captioning.cleaning import clean_caption


@pytest.mark.parametrize("raw,caption,fixes", [
    ("A tench swims in a clear pond.", "A tench swims in a clear pond.", ()),
    ('  "A cat on a mat."  ', "A cat on a mat.", ("quotes",)),
    ("Caption: a   dog\tin the rain.", "a dog in the rain.", ("prefix",)),
    ("A red barn at dusk. (5 words)", "A red barn at dusk.", ("word_count",)),
    ("A red barn at dusk.\nNote: this has 5 words.", "A red barn at dusk.", ("multi_line",)),
    ("Here is a caption:\n\"A goldfish in a bowl.\"", "A goldfish in a bowl.", ("preamble", "quotes")),
    ("Sure! Here is a caption: A cat on a mat.", "A cat on a mat.", ("preamble",)),
    ("A cat on a mat.\n" + "More text.\n" * 500, "A cat on a mat.", ("multi_line",)),
])
def test_fixes_are_applied_and_counted(raw, caption, fixes):
    result = clean_caption(raw)
    assert (result.caption, result.reject, result.fixes) == (caption, None, fixes)


@pytest.mark.parametrize("raw,reason", [
    ("", "empty"),
    ("  \n \n", "empty"),
    ('""', "empty"),
    ("I'm sorry, but I cannot write that.", "refusal"),
    ("As an AI language model, I describe scenes.", "refusal"),
    ("Note: the concept is unclear.", "note"),
    ("Your concept is tench. Output one single sentence only.", "prompt_echo"),
    (" ".join(["word"] * 31), "overlong"),
    ("a" * 100_000, "overlong"),
    ("word " * 50_000, "overlong"),
    ("\n" * 1000, "empty"),
])
def test_rejections_keep_their_reason(raw, reason):
    result = clean_caption(raw)
    assert result.caption == "" and result.reject == reason


def test_max_words_is_configurable():
    assert clean_caption("one two three four", max_words=3).reject == "overlong"
    assert clean_caption("one two three", max_words=3).reject is None
