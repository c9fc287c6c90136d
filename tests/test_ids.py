from synthclip_core.ids import caption_id, concept_id, derive_seed, image_id, stable_id, unit_draw


def test_ids_are_deterministic_and_distinct():
    assert concept_id("tench") == concept_id("tench")
    assert concept_id("tench") != concept_id("Tench")
    assert len(stable_id("a")) == 16
    c = concept_id("tench")
    assert caption_id(c, "synthclip@v1", 0, 0) != caption_id(c, "synthclip@v1", 1, 0)
    assert caption_id(c, "synthclip@v1", 0, 0) != caption_id(c, "synthclip@v1", 0, 1)
    assert image_id("x", 0, 0) != image_id("x", 1, 0)


def test_parts_do_not_run_together():
    assert stable_id("ab", "c") != stable_id("a", "bc")


def test_seeds_and_draws_are_in_range():
    seeds = {derive_seed(0, "c", i) for i in range(1000)}
    assert len(seeds) == 1000 and all(0 <= s < 2**31 for s in seeds)
    draws = [unit_draw(0, i) for i in range(10000)]
    assert all(0 <= d < 1 for d in draws)
    assert 0.45 < sum(draws) / len(draws) < 0.55
