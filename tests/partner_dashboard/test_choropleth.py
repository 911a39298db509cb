"""Colour bands of the records map: ranges of published figures, never interleaved."""
import itertools
import random

from warden_app.partner_dashboard.choropleth import COUNT_COLOURS, band_of, count_bands


def test_few_distinct_figures_get_a_band_each():
    bands = count_bands([10, 25, 10, 40])
    assert [(b.low, b.high) for b in bands] == [(10, 10), (25, 25), (40, 40)]
    assert [b.label for b in bands] == ["10", "25", "40"]
    assert len({b.colour for b in bands}) == 3 and COUNT_COLOURS[0] not in {b.colour for b in bands}


def test_no_figures_no_bands_and_withheld_has_no_band():
    assert count_bands([]) == []
    assert band_of(None, count_bands([10, 15])) is None


def test_many_figures_get_at_most_five_ordered_bands_sharing_equal_values():
    rng = random.Random(17)
    for _ in range(200):
        values = [5 * rng.randint(2, 60) for _ in range(rng.randint(1, 40))]
        bands = count_bands(values)
        assert 1 <= len(bands) <= 5
        for value in values:
            holding = [b for b in bands if b.holds(value)]
            assert len(holding) == 1  # every figure in exactly one band
        for lower, upper in itertools.pairwise(bands):
            assert lower.high < upper.low  # ranges never overlap: a larger figure, a darker band
            assert COUNT_COLOURS.index(lower.colour) < COUNT_COLOURS.index(upper.colour)
        assert {b.low for b in bands} <= set(values) and {b.high for b in bands} <= set(values)
