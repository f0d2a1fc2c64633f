"""The ``racing`` command line: one console script, one subcommand per job.

User mistakes (bad files, bad specs, bad values) are :class:`racing.errors.RacingError`
and print as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from racing.errors import RacingError


#: Modules that each define ``add_parser(subparsers)`` for one subcommand. They import
#: their heavy dependencies (gymnasium, torch, ray) inside the command, so ``racing --help``
#: and ``racing tracks`` stay fast and work without them.
COMMAND_MODULES = (
    "racing.demo",
    "racing.reference",
    "agents.bench",
    "agents.evaluate",
    "agents.export",
    "agents.serve",
    "agents.train",
)


def _cmd_tracks(args: argparse.Namespace) -> int:
    from racing.trackio import builtin_track_names, load_track

    specs = args.tracks or builtin_track_names()
    rows = [load_track(spec).describe() for spec in specs]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':<22} {'length m':>9} {'corners':>7} {'min R m':>8} {'width m':>12}  source"
    print(header)
    print("-" * len(header))
    for r in rows:
        w = f"{r['width_m'][0]:.1f}-{r['width_m'][1]:.1f}"
        print(f"{r['name']:<22} {r['length_m']:>9.1f} {r['corners']:>7d} {r['min_radius_m']:>8.1f} {w:>12}  {r['source']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="racing", description="Racing platform for reinforcement learning.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("tracks", help="list built-in circuits, or describe track specs")
    p.add_argument("tracks", nargs="*", metavar="T", help="built-in name, random:SEED, or a CSV path")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_cmd_tracks)

    import importlib

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command whose module is not written yet
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RacingError as exc:
        print(f"racing {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"racing {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
