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

Online, the trainer fits a :class:`ValueModel` on its sample of customers
(:func:`fit_value_model`) and publishes it with the model version; every worker predicts each
customer's value from their features with it (:meth:`ValueModel.predict`), and places them in
a value tier by the population's quantiles of predicted value, fixed at the fit:

>>> value = ValueModel(model, horizon_weeks=52, thresholds=[("top", 60.0), ("rest", 0.0)],
...                    customers=1000)
>>> day = 86_400.0
>>> loyal = {"orders": 6, "avg_order_value": 40.0, "days_since_first_order": 300.0,
...          "days_since_last_order": 10.0}
>>> predicted = value.predict(loyal)
>>> round(predicted["expected_orders"], 2), round(predicted["predicted_value"], 2)
(3.91, 155.12)
>>> value.tier(predicted["predicted_value"]), value.tier(value.predict(
...     {**loyal, "days_since_last_order": 290.0})["predicted_value"])
('top', 'rest')
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import betaln, gammaln, hyp2f1

from features.definitions import MODEL_FEATURES
from segmenter.segmentation_settings import ValueSettings

WEEK = 7 * 86_400.0
DAY = 86_400.0
#: Parameters are kept within e^-LOG_BOUND..e^LOG_BOUND. Where a shop's customers all buy at
#: about one rate, or drop out at one rate, the likelihood's optimum lies at infinity (the
#: model's homogeneous limit), where the closed forms overflow; a large finite value gives the
#: same predictions within a fraction of a percent.
LOG_BOUND = 9.0
#: How often the trainer checks whether the value tiers' shares drifted from their targets.
TIER_CHECK_S = 60.0
#: What the value model adds to every user's features (0 without orders or before a model).
VALUE_FEATURES = tuple(MODEL_FEATURES)


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


@dataclass(frozen=True, slots=True)
class ValueModel:
    """A fitted :class:`BuyTillYouDie`, its horizon and the value tiers' lower bounds."""

    params: BuyTillYouDie
    horizon_weeks: float
    #: (tier, lowest predicted value in it), highest tier first; the last bound is 0.
    thresholds: list[tuple[str, float]]
    #: Customers the fit saw.
    customers: int

    def predict(self, features: Mapping[str, Any]) -> dict[str, float]:
        """Predicted value and orders over the horizon, and the chance to be still active,
        from a user's features as of their evaluation (zeros without orders)."""
        orders = features["orders"]
        if orders <= 0:
            return dict.fromkeys(VALUE_FEATURES, 0.0)
        age = features["days_since_first_order"] / 7
        last = age - features["days_since_last_order"] / 7
        x = orders - 1
        purchases = self.params.expected_purchases(self.horizon_weeks, x, last, age)
        # Spend was fitted on all of a customer's orders (see fit_value_model).
        spend = self.params.expected_spend(orders, features["avg_order_value"])
        if not math.isfinite(purchases * spend):  # beyond the closed forms' range: no claim
            return dict.fromkeys(VALUE_FEATURES, 0.0)
        return {"predicted_value": round(purchases * spend, 2),
                "expected_orders": round(purchases, 4),
                "p_alive": round(self.params.alive(x, last, age), 4)}

    def fingerprint(self) -> str:
        """Short and deterministic (the fields' exact reprs): which value model a user was
        last evaluated with (``UserRecord.valued_with``), across restarts."""
        return hashlib.sha1(repr(self).encode()).hexdigest()[:12]

    def tier(self, predicted_value: float) -> str:
        for name, bound in self.thresholds:
            if predicted_value >= bound:
                return name
        return self.thresholds[-1][0]

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params.to_dict(), "horizon_weeks": self.horizon_weeks,
                "thresholds": self.thresholds, "customers": self.customers}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ValueModel:
        return cls(BuyTillYouDie(**state["params"]), state["horizon_weeks"],
                   [(name, bound) for name, bound in state["thresholds"]], state["customers"])


def customer_summary(features: Mapping[str, Any], now: float) -> list[float] | None:
    """What the trainer needs of a customer, independent of when it fits: orders, the times
    of the first and the last, and the mean order value (None without orders)."""
    orders = features["orders"]
    if orders <= 0:
        return None
    return [float(orders), now - features["days_since_first_order"] * DAY,
            now - features["days_since_last_order"] * DAY, float(features["avg_order_value"])]


def fit_value_model(summaries: list[list[float]], horizon_weeks: float,
                    tiers: list[tuple[str, float]]) -> ValueModel:
    """Fit on customers' summaries (:func:`customer_summary`) as of the latest order among
    them (event time, so history replayed today fits as it would have then); ``tiers``:
    (name, cumulative top share), ascending shares ending at 1.

    The Gamma-Gamma part is fitted on every customer's orders, the first included (their
    mean order value is what is kept), not on repeat orders alone as in the paper: the same
    model of spend, with one more observation per customer.
    """
    x, t_x, T, m = _arrays(summaries)
    keep = T > 0  # a first order at the very fit time says nothing yet
    params = fit(x[keep], t_x[keep], T[keep], m[keep], spend_counts=x[keep] + 1)
    values = _values(params, horizon_weeks, x, t_x, T, m)[keep]
    values = values[np.isfinite(values)]
    if not len(values):
        raise ValueError("no customer's value could be predicted")
    thresholds = [(name, float(np.quantile(values, 1 - share)) if share < 1 else 0.0)
                  for name, share in tiers]
    return ValueModel(params, horizon_weeks, thresholds, int(keep.sum()))


def predicted_values(params: BuyTillYouDie, horizon_weeks: float,
                     summaries: list[list[float]]) -> np.ndarray:
    """Each summarised customer's predicted value as of the latest order among them."""
    return _values(params, horizon_weeks, *_arrays(summaries))


def _values(params: BuyTillYouDie, horizon_weeks: float, *arrays: np.ndarray) -> np.ndarray:
    """Predicted values from repeat orders, time of the last, age and mean order value."""
    return np.array([params.expected_purchases(horizon_weeks, *row[:3])
                     * params.expected_spend(row[0] + 1, row[3])
                     for row in zip(*arrays, strict=True)])


def _arrays(summaries: list[list[float]]) -> tuple[np.ndarray, ...]:
    """Repeat orders, time of the last and age (weeks, as of the latest order among them),
    mean order value."""
    data = np.asarray(summaries, dtype=float)
    now = data[:, 2].max()
    x = data[:, 0] - 1
    return (x, (data[:, 2] - data[:, 1]) / WEEK, (now - data[:, 1]) / WEEK,
            np.maximum(data[:, 3], 0.01))



class ValueTrainer:
    """Keeps the trainer's sample of customer summaries and fits the value model on it."""

    def __init__(self, settings: ValueSettings | None, model: ValueModel | None = None) -> None:
        """``settings``: None or not enabled: no value model."""
        self.settings = settings if settings is not None and settings.enabled else None
        #: Sampled customers -> summary (:func:`customer_summary`).
        self.customers: dict[str, list[float]] = {}
        self.model = model
        #: None: resumed from a published model; the interval counts from the first call.
        self.fitted_at: float | None = -np.inf if model is None else None
        #: Customers in the sample at which to fit again before the interval is over.
        self.refit_size = 0 if model is None else 2 * model.customers
        #: Why the last fit was not used (for the log), None if it was.
        self.problem: str | None = None
        self.checked_at = -np.inf
        #: What fits (:func:`fit_value_model` or an equal): the worker runs it in a process of
        #: its own, so that a fit does not take the interpreter from the event loop.
        self.fit_model: Callable[[list[list[float]], float, list[tuple[str, float]]],
                                 ValueModel] = fit_value_model

    def learn(self, customers: Mapping[str, list[float] | None]) -> None:
        if self.settings is None:
            return
        for user_id, summary in customers.items():
            if summary is None:
                self.customers.pop(user_id, None)
            else:
                self.customers[user_id] = summary

    def fit(self, now: float, sampled: Collection[str]) -> bool:
        """Fit again when due, on the customers still ``sampled``; whether the model
        changed."""
        settings = self.settings
        if settings is None:
            return False
        # Early on the sample grows fast: fit again whenever it has doubled (grown by a tenth
        # after a fit that could not be used).
        if self.fitted_at is None:
            self.fitted_at = now
        grown = len(self.customers) >= self.refit_size
        if (not grown and now - self.fitted_at < settings.refit_interval_s
                and not self._tiers_drifted(now, sampled)):
            return False
        # Customers who left the sample are dropped; the rest is a sample of all customers.
        self.customers = {u: c for u, c in self.customers.items() if u in sampled}
        if len(self.customers) < settings.min_customers:
            return False
        self.fitted_at = now
        self.refit_size = int(1.1 * len(self.customers)) + 1
        tiers = [(tier.name, tier.top_share) for tier in settings.tiers]
        try:
            value = self.fit_model(list(self.customers.values()), settings.horizon_weeks, tiers)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
            self.problem = f"value model fit failed: {exc}"  # degenerate data
            return False
        params = value.params
        # Expected spend divides by p * orders + q - 1: it must be positive from one order on.
        if not (all(np.isfinite(list(params.to_dict().values()))) and params.p + params.q > 1):
            self.problem = f"value model fit unusable: {params}"
            return False
        self.refit_size = 2 * len(self.customers)
        if self.model is not None and self._same_tiers(self.model, value):
            self.problem = None
            return False  # a refit that moves (almost) no one is not worth a version
        self.model, self.problem = value, None
        return True

    def _tiers_drifted(self, now: float, sampled: Collection[str]) -> bool:
        """Once a minute: whether a tier's share of the sampled customers is 5 points off
        its target (customers' orders moved the predictions since the fit)."""
        if self.model is None or self.settings is None or now - self.checked_at < TIER_CHECK_S:
            return False
        self.checked_at = now
        summaries = [c for u, c in self.customers.items() if u in sampled]
        if len(summaries) < self.settings.min_customers:
            return False
        values = predicted_values(self.model.params, self.model.horizon_weeks, summaries)
        tiers = [self.model.tier(v) for v in values]
        target = 0.0
        for tier in self.settings.tiers:
            share = tiers.count(tier.name) / len(tiers)
            if abs(share - (tier.top_share - target)) > 0.05:
                return True
            target = tier.top_share
        return False

    def _same_tiers(self, old: ValueModel, new: ValueModel) -> bool:
        """Whether the new model puts at most 1% of the sampled customers in another tier."""
        summaries = list(self.customers.values())
        before = [old.tier(v) for v in predicted_values(old.params, old.horizon_weeks,
                                                        summaries)]
        after = [new.tier(v) for v in predicted_values(new.params, new.horizon_weeks,
                                                       summaries)]
        return sum(a != b for a, b in zip(before, after, strict=True)) <= 0.01 * len(before)


def fit(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, m: np.ndarray,
        spend_counts: np.ndarray | None = None) -> BuyTillYouDie:
    """Fit both models on a population: repeat purchases, time of the last, age (weeks) and
    mean purchase value of each customer. ``spend_counts``: how many purchases each ``m``
    averages (default: the repeat purchases ``x``, as in the paper)."""
    r, alpha, a, b = _fit(lambda params: -_bgnbd_ll(params, x, t_x, T).sum(),
                          [1.0, 1.0, 1.0, 1.0])
    counts = x if spend_counts is None else spend_counts
    spent = counts > 0
    p, q, gamma = _fit(lambda params: -_gamma_gamma_ll(params, counts[spent], m[spent]).sum(),
                       [1.0, 2.0, float(np.mean(m[spent]))])
    return BuyTillYouDie(r, alpha, a, b, p, q, gamma)


def _fit(negative_ll, start: list[float]) -> list[float]:
    """Quasi-Newton, then Nelder-Mead to polish: Nelder-Mead alone wandered off to a
    degenerate optimum (p and gamma without bound) on a shop drawn from the model itself.
    Parameters are positive: their logarithms are optimised."""
    def objective(logs: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            value = negative_ll(np.exp(logs))
        return float(value) if np.isfinite(value) else 1e300

    from scipy.optimize import minimize  # only fitting needs it: every worker predicts

    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(start)
    first = minimize(objective, np.log(start), method="L-BFGS-B", bounds=bounds)
    result = minimize(objective, first.x, method="Nelder-Mead", bounds=bounds,
                      options={"xatol": 1e-7, "fatol": 1e-7, "maxiter": 20_000, "maxfev": 40_000})
    return [float(v) for v in np.exp(result.x)]


def _bgnbd_ll(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
              ) -> np.ndarray:
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300))
                      - (r + x) * np.log(alpha + t_x), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


def _gamma_gamma_ll(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    p, q, gamma = params
    return (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(gamma)
            + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(gamma + x * m))
