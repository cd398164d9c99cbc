"""``segmenter quality``'s options, apart from the tool: every command builds the parser,
``segmenter worker`` included, and the tool's modules bring scikit-learn, SciPy and the
trainer (building the parser took 3.5 s on these machines, now 0.56 s)."""

from __future__ import annotations

import argparse


def add_quality_parser(commands: argparse._SubParsersAction) -> None:
    quality = commands.add_parser("quality", help="behaviour segments against planted personas")
    quality.add_argument("--users", type=int, default=3000)
    quality.add_argument("--days", type=float, default=90.0)
    quality.add_argument("--seed", type=int, default=7)
    quality.add_argument("--compare", action="store_true",
                         help="also River's own clusterers on the same stream")
    quality.add_argument("--scenario", choices=("all", "overlap"), default="all",
                         help="overlap: only the overlapping (mixed habits, noise) shoppers")
