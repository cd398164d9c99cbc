"""Predicted customer lifetime value: BG/NBD purchases with Gamma-Gamma spend.

The BG/NBD model (Fader, Hardie & Lee 2005, "Counting your customers the easy way") takes each
customer's repeat purchases ``x``, the time of the last one ``t_x`` and their age ``T`` (from the
first purchase, in weeks) and fits four parameters on the whole population; the Gamma-Gamma
model (Fader, Hardie & Lee 2005, "RFM and CLV") takes the mean value ``m`` of the repeat
purchases of customers with ``x > 0`` and fits three. With them, each customer's expected
purchases in the next ``t`` weeks and the expected value of a purchase follow in closed form.
The fits maximise the likelihoods with SciPy; ``tests/test_clv.py`` checks them against the
papers' published CDNOW results.

>>> model = BuyTillYouDie(r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, gamma=15.44)
>>> round(model.expected_purchases(39, x=2, t_x=30.43, T=38.86), 3)
1.226
>>> round(model.expected_spend(x=2, m=22.35), 2)
24.66
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

WEEK = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class BuyTillYouDie:
    """Fitted BG/NBD (r, alpha, a, b) and Gamma-Gamma (p, q, gamma) parameters."""

    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    gamma: float

    def expected_purchases(self, t: float, x: float, t_x: float, T: float) -> float:
        """Purchases expected in the next ``t`` weeks of a customer with ``x`` repeat
        purchases, the last at ``t_x``, first purchase ``T`` weeks ago (FHL 2005, eq. 10)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        head = (a + b + x - 1) / (a - 1)
        ratio = (alpha + T) / (alpha + T + t)
        body = 1 - ratio ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
        tail = 1 + (x > 0) * (a / (b + x - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x)
        return float(head * body / tail)

    def alive(self, x: float, t_x: float, T: float) -> float:
        """Probability that the customer is still active (FHL 2008 note, eq. 1)."""
        if x == 0:
            return 1.0
        odds = (self.a / (self.b + x - 1)) * ((self.alpha + T) / (self.alpha + t_x)) ** (
            self.r + x)
        return 1 / (1 + odds)

    def expected_spend(self, x: float, m: float) -> float:
        """Expected value of a purchase of a customer whose ``x`` repeat purchases averaged
        ``m`` (the population mean for ``x == 0``)."""
        p, q, gamma = self.p, self.q, self.gamma
        return (p * (gamma + x * m)) / (p * x + q - 1)

    def value(self, weeks: float, x: float, t_x: float, T: float, m: float) -> float:
        """Expected value of the customer's purchases in the next ``weeks`` (undiscounted)."""
        return self.expected_purchases(weeks, x, t_x, T) * self.expected_spend(x, m)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def fit(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, m: np.ndarray) -> BuyTillYouDie:
    """Fit both models on a population: repeat purchases, time of the last, age (weeks) and
    mean repeat-purchase value of each customer."""
    r, alpha, a, b = _fit(lambda params: -_bgnbd_ll(params, x, t_x, T).sum(),
                          np.array([1.0, 1.0, 1.0, 1.0]))
    repeat = x > 0
    p, q, gamma = _fit(lambda params: -_gamma_gamma_ll(params, x[repeat], m[repeat]).sum(),
                       np.array([1.0, 1.0, 1.0]))
    return BuyTillYouDie(r, alpha, a, b, p, q, gamma)


def _fit(negative_ll, start: np.ndarray) -> list[float]:
    # Parameters are positive: optimise their logarithms.
    result = minimize(lambda logs: negative_ll(np.exp(logs)), np.log(start),
                      method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-7,
                                                     "maxiter": 20_000, "maxfev": 40_000})
    return [float(v) for v in np.exp(result.x)]


def _bgnbd_ll(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
              ) -> np.ndarray:
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * math.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300))
                      - (r + x) * np.log(alpha + t_x), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


def _gamma_gamma_ll(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    p, q, gamma = params
    return (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * math.log(gamma)
            + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(gamma + x * m))
