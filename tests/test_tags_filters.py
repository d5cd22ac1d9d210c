"""Tag filters as pure functions on caption strings, the guides' character preset, and the frequency tables
and chart."""
import numpy as np
import pytest

from kiln.core.tags.filters import TagFilterSpec, apply_filter, parse_patterns, parse_replace
from kiln.core.tags.frequency import comparison_chart, comparison_text, frequency
from kiln.core.tags.prune_rules import preset_prunes


def test_patterns_keep_regex_lines_whole_and_replace_pairs_parse():
    assert parse_patterns("solo, 1girl\nre:^x{1,2}$\n  *hair ") == ("solo", "1girl", "re:^x{1,2}$", "*hair")
    assert parse_replace("red_dress=zyxdress, blue eyes = zyxeyes") == (("red_dress", "zyxdress"),
                                                                        ("blue eyes", "zyxeyes"))
    with pytest.raises(ValueError, match="not old=new"):
        parse_replace("red_dress zyxdress")
    cap = "x, xx, xxx, long_hair"
    assert apply_filter(cap, TagFilterSpec(remove=parse_patterns("re:^x{1,2}$"))) == "xxx, long_hair"


def test_bad_specs_fail_at_once():
    with pytest.raises(ValueError, match="not a valid regex"):
        TagFilterSpec(remove=("re:(unclosed",))
    with pytest.raises(ValueError, match="copyright"):
        TagFilterSpec(remove_categories=("series",))


@pytest.mark.parametrize("tag,pruned", [
    ("aqua eyes", True), ("heterochromia", True), ("two-tone hair", True), ("light brown hair", True),
    ("very long hair", True), ("short hair", True), ("ponytail", False), ("twintails", False), ("braid", False),
    ("hair between eyes", False), ("hair ornament", False), ("long sleeves", False), ("closed eyes", False)])
def test_character_preset_follows_the_guides(tag, pruned):
    assert preset_prunes("character", tag) is pruned
    kept = apply_filter(f"1girl, {tag.replace(' ', '_')}", TagFilterSpec(character_preset=True))
    assert kept == ("1girl" if pruned else f"1girl, {tag.replace(' ', '_')}")


def test_cap_keeps_the_most_confident_and_replaced_tags_keep_their_score():
    scores = {"a": 0.2, "red dress": 0.9, "b": 0.5}
    spec = TagFilterSpec(replace=(("red_dress", "zyxdress"),), max_tags=2, trigger="zyxchar")
    assert apply_filter("a, red_dress, b", spec, scores=scores) == "zyxchar, zyxdress, b"
    # a tag nobody scored was written by a person: it outranks the tagger's guesses
    assert apply_filter("mine, a, b", TagFilterSpec(max_tags=2), scores=scores) == "mine, b"
    assert apply_filter("a, b, c", TagFilterSpec(max_tags=2)) == "a, b"   # no scores: the earliest


def test_trigger_moves_first_once_and_implied_tags_go_in_either_spelling():
    spec = TagFilterSpec(trigger="zyx char", drop_implied=True)
    assert apply_filter("shirt, white_shirt, zyx_char, smile, evil smile", spec) == "zyx char, white_shirt, evil smile"
    assert apply_filter("", TagFilterSpec(trigger="t")) == "t"


def test_metadata_and_wildcards():
    spec = TagFilterSpec(remove_meta=True, remove=("*_request", "Solo"))
    assert apply_filter("1girl, solo, artist_request, english commentary, Watermark, smile", spec) == "1girl, smile"


def test_frequency_counts_spellings_as_one_and_compares():
    before = ["1girl, red_dress, solo", "1girl, red dress", "solo, watermark"]
    assert frequency(before) == {"1girl": 2, "red_dress": 2, "solo": 2, "watermark": 1}
    after = [apply_filter(c, TagFilterSpec(remove_meta=True, trigger="zyx")) for c in before]
    text = comparison_text(before, after)
    assert "4 distinct tags before, 4 after" in text
    assert "pruned: watermark" in text and "added: zyx (3)" in text
    assert any(line.split() == ["2", "2", "1girl"] for line in text.splitlines())


def test_chart_draws_one_bar_per_tag_before_and_after():
    before = ["a, b, c", "a, b", "a"]
    after = ["a", "a", "a"]
    img = comparison_chart(before, after, rows=5)
    assert img.dtype == np.float32 and img.shape[2] == 3 and 0 <= img.min() and img.max() <= 1
    half = img.shape[1] // 2

    def bars(panel):   # rows (16 px each, from y=26) with any strongly coloured pixel: drawn bars
        colour = (panel.max(axis=2) - panel.min(axis=2)) > 0.3
        return [bool(colour[26 + 16 * i + 3: 26 + 16 * i + 12].any()) for i in range(5)]
    assert bars(img[:, :half]) == [True, True, True, False, False]
    assert bars(img[:, half:]) == [True, False, False, False, False]
    # the most frequent tag's bar is the longest
    row = img[26 + 8, :half]
    longest = ((row.max(axis=1) - row.min(axis=1)) > 0.3).sum()
    row3 = img[26 + 32 + 8, :half]
    assert longest > ((row3.max(axis=1) - row3.min(axis=1)) > 0.3).sum()
