"""The project's one error root, and the few kinds a caller tells apart.

Every error the segmenter raises on purpose is a :class:`SegmenterError`, so a caller that
embeds it (a CLI, a service, a test harness) can catch them all with one ``except``; the kinds
say what to do about it: fix the input (:class:`BadInput`), fix the configuration
(:class:`BadConfig`), or wait for or repair a service (:class:`Unavailable`). The root lives in
``features`` because it is the bottom floor: every package may import it, and it imports nothing.

The kinds keep the built-in base their raisers always had (``ValueError``, ``RuntimeError``), so
code that caught those goes on catching them.

>>> from features.money import UnknownCurrency
>>> issubclass(UnknownCurrency, BadInput) and issubclass(UnknownCurrency, SegmenterError)
True
"""

from __future__ import annotations


class SegmenterError(Exception):
    """Any error the segmenter raises on purpose."""


class BadInput(SegmenterError, ValueError):
    """An event, an exported row, a command-line value or a stored value that cannot be used."""


class BadConfig(SegmenterError, ValueError):
    """A setting, a rule or a topic layout that cannot work; caught at start."""


class Unavailable(SegmenterError, RuntimeError):
    """A service the segmenter needs (Kafka, Redis, a local broker) cannot be reached or started."""


class InvariantBroken(SegmenterError, RuntimeError):
    """The code reached a state it rules out: a bug, reported with what was expected."""
