"""The buy-till-you-die models against the papers' published CDNOW results (the CDNOW sample
summary in tests/fixtures, as the lifetimes package ships it: 2,357 customers, 39 weeks)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from segmenter.clv import fit

FIXTURE = Path(__file__).parent / "fixtures" / "cdnow_summary.csv"
#: Fader, Hardie & Lee (2005), "Counting your customers the easy way", and "RFM and CLV".
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426,
             "p": 6.25, "q": 3.74, "gamma": 15.44}


def test_the_fit_recovers_the_published_cdnow_parameters_and_predictions() -> None:
    with FIXTURE.open() as file:
        rows = list(csv.DictReader(file))
    x, t_x, T, m = (np.array([float(row[k]) for row in rows]) for k in ("x", "t_x", "T", "zbar"))
    model = fit(x, t_x, T, m)
    for name, value in PUBLISHED.items():
        assert getattr(model, name) == pytest.approx(value, rel=0.01), name
    # The papers' worked example: customer 1 (x=2, t_x=30.43, T=38.86) over the next 39 weeks.
    assert model.expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=0.002)
    assert model.expected_spend(2, 22.35) == pytest.approx(24.66, abs=0.01)
    # A customer who bought often long ago is likely gone; a recent one is not.
    assert model.alive(10, 5.0, 38.86) < 0.1 < 0.9 < model.alive(10, 38.0, 38.86)
    assert model.value(52, 0, 0.0, 38.86, 0.0) < model.value(52, 5, 38.0, 38.86, 30.0)
