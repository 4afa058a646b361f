"""Vega, Vega-Lite and Vega-Embed as one script: vl-convert's bundled copy (about 0.9 MB), which
the live chart carries into the page and a report into its file, so both draw with no network.
vl-convert takes over a second to make it; it is made once per vl-convert version and kept in the
user's cache folder ($XDG_CACHE_HOME/nbkit, else ~/.cache/nbkit), and where that cannot be read
or written it is made again."""

from __future__ import annotations

import functools
import os
from pathlib import Path

WHOLE = "window.vegaEmbed="


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nbkit"


@functools.cache
def javascript() -> str:
    """The bundle, from the cache when it holds this vl-convert version's."""
    import importlib.metadata

    import vl_convert as vlc

    from nbkit.rundir import files

    try:
        version = importlib.metadata.version("vl-convert-python")
    except importlib.metadata.PackageNotFoundError:
        version = None
    path = cache_dir() / f"vega-bundle-{version}.js" if version else None
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
            if WHOLE in text[-400:]:  # the bundle's last statement: not a cut or foreign file
                return text
        except (OSError, UnicodeError):
            pass
    text = vlc.javascript_bundle()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            files.write_text(path, text, fsync=False)  # written whole, then renamed
        except OSError:
            pass  # a read-only home: made again next time
    return text
