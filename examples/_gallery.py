"""Conventions shared by the gallery pages: themes, quick mode and where figures are saved.

The pages live in one folder per theme (:data:`THEMES`, in gallery order); this folder, which
holds the modules the pages share, is put on the import path by the gallery's configuration
(``docs/conf.py`` and ``examples/run_gallery.py``), so that a page imports them by name.

``SOFTFLOW_QUICK=1`` asks every page for a short run (``make gallery`` and the docs build set
it); ``SOFTFLOW_GALLERY_OUT`` names the folder for PNG and GIF files (default ``gallery-out/`` at
the repository root).
"""

import os
import pathlib

EXAMPLES = pathlib.Path(__file__).resolve().parent
_ROOT = EXAMPLES.parent

#: The gallery's sections, in order: one subfolder of ``examples/`` each, holding its pages
#: (``plot_*.py``) and a ``GALLERY_HEADER.rst`` with the section's title and introduction.
THEMES = ("story", "inverse_problems", "algorithms", "learning")


def pages() -> list[pathlib.Path]:
    """Every gallery page, theme by theme (in :data:`THEMES` order), by name within a theme."""
    return [page for theme in THEMES for page in sorted((EXAMPLES / theme).glob("plot_*.py"))]


def quick() -> bool:
    """Whether the page should run in quick mode (``SOFTFLOW_QUICK`` set and not ``0``)."""
    return os.environ.get("SOFTFLOW_QUICK", "0") not in ("", "0")


def output_dir() -> pathlib.Path:
    """The folder that figures are written to, created if needed."""
    path = pathlib.Path(os.environ.get("SOFTFLOW_GALLERY_OUT", _ROOT / "gallery-out"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig, name: str, **kwargs) -> pathlib.Path:
    """Save ``fig`` as ``<output_dir>/<name>.png`` and return the path."""
    path = output_dir() / f"{name}.png"
    fig.savefig(path, dpi=kwargs.pop("dpi", 120), bbox_inches="tight", **kwargs)
    return path
