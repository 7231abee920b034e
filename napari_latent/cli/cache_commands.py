"""The slice cache on the command line: ``cache info``, ``cache clear``, and the cache options of
``train`` and ``evaluate``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .common import CliError

if TYPE_CHECKING:
    from ..training.slice_cache import SliceCache


def add_cache_options(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir DIR`` and ``--no-cache`` (one or the other)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cache-dir", metavar="DIR", default=None,
                       help="the slice cache folder (default: $NAPARI_LATENT_CACHE, else the user cache folder's "
                       "napari-latent/slices); each volume is sliced once into it and read from there")
    group.add_argument("--no-cache", action="store_true",
                       help="slice into a temporary folder deleted at the end (nothing kept between runs)")


def cache_from_args(args: argparse.Namespace) -> SliceCache:
    """The slice cache that ``--cache-dir``/``--no-cache`` ask for."""
    from ..training.slice_cache import SliceCache

    if getattr(args, "no_cache", False):
        return SliceCache.temporary()
    return SliceCache(args.cache_dir) if getattr(args, "cache_dir", None) else SliceCache()


def _size_text(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover


def cmd_cache_info(args: argparse.Namespace) -> int:
    """Where the slice cache is and what it holds."""
    from ..training.slice_cache import SliceCache

    cache = SliceCache(args.cache_dir)
    if cache.root.exists() and not cache.root.is_dir():
        raise CliError(f"{cache.root}: is not a folder")
    info = cache.info()
    print(f"location   {info.root}{'' if info.root.is_dir() else ' (not created yet)'}")
    print(f"entries    {info.entries} ({_size_text(info.entry_bytes)})")
    print(f"digests    {info.digests} memoised content hashes")
    if info.temporary_files:
        print(f"temporary  {info.temporary_files} left-over files of interrupted writes "
              f"({_size_text(info.temporary_bytes)})")
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    """Delete slice-cache entries (all, or those unused for some days)."""
    from ..training.slice_cache import SliceCache

    cache = SliceCache(args.cache_dir)
    if cache.root.exists() and not cache.root.is_dir():
        raise CliError(f"{cache.root}: is not a folder")
    removed, freed = cache.clear(args.older_than)
    which = "" if args.older_than is None else f" unused for {args.older_than:g} days"
    print(f"removed {removed} files{which} ({_size_text(freed)}) from {cache.root}")
    return 0


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected 0 days or more, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``cache`` command."""
    p = sub.add_parser("cache", help="the slice cache of training: where it is, what it holds, clearing it",
                       description="Training slices each volume once into the slice cache (keyed by the volume's "
                       "content and the preprocessing) and reads batches from there. 'info' shows where it is and "
                       "what it holds; 'clear' deletes entries.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    info = actions.add_parser("info", help="location, entries and size",
                              description="Show where the slice cache is and what it holds.")
    info.add_argument("--cache-dir", metavar="DIR", default=None,
                      help="the cache folder (default: $NAPARI_LATENT_CACHE, else the user cache folder's "
                      "napari-latent/slices)")
    info.set_defaults(func=cmd_cache_info)
    clear = actions.add_parser("clear", help="delete entries (all, or those unused for DAYS days)",
                               description="Delete slice-cache entries and memoised content hashes: all of them, "
                               "or those unused for --older-than DAYS days. Only the cache's own files are "
                               "deleted. Do not clear a cache that a running training reads from.")
    clear.add_argument("--cache-dir", metavar="DIR", default=None, help="the cache folder (default as for info)")
    clear.add_argument("--older-than", type=_days, default=None, metavar="DAYS",
                       help="only entries not used for this many days (fractions allowed)")
    clear.set_defaults(func=cmd_cache_clear)
    p.set_defaults(func=_missing_action)


def _missing_action(args: argparse.Namespace) -> int:
    raise CliError("choose an action: 'cache info' or 'cache clear'")
