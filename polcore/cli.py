"""The `polcore` command: `book`, and the proof tools `prove`, `verify`, `inspect`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polcore.commands.proof import add_parsers as add_proof_parsers
from polcore.commands.run import add_parsers as add_run_parsers
from polcore.profiles import DEFAULT_PROFILE, PROFILE_NAMES, PROFILES


def _book(args: argparse.Namespace) -> int:
    from polcore.book import BookError, make_book
    from polcore.runtime import ProfileUnavailable

    try:
        make_book(Path(args.root).resolve(), args.profile, Path(args.out).resolve() if args.out else None,
                  build=not args.no_build, only=args.only)
    except (BookError, ProfileUnavailable) as err:
        print(f"polcore book: {err}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polcore", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    book = sub.add_parser("book", help="execute every notebook of _toc.yml, then build the HTML book")
    book.add_argument("--profile", choices=PROFILE_NAMES, default=DEFAULT_PROFILE,
                      help="; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()))
    book.add_argument("--root", default=".", help="the book's root (holds _toc.yml and _config.yml)")
    book.add_argument("--out", help="where executed notebooks go (default: <root>/book)")
    book.add_argument("--no-build", action="store_true", help="execute notebooks only")
    book.add_argument("--only", nargs="+", help="execute only these notebooks (names without .py)")
    book.set_defaults(func=_book)
    add_proof_parsers(sub)
    add_run_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
