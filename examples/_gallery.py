"""Conventions shared by the gallery scripts: quick mode and where figures are saved.

``SOFTFLOW_QUICK=1`` asks every example for a short run (``make gallery`` and the docs build set
it); ``SOFTFLOW_GALLERY_OUT`` names the folder for PNG and GIF files (default ``gallery-out/`` at
the repository root).
"""

import os
import pathlib

_ROOT = pathlib.Path(__file__).resolve().parent.parent


def quick() -> bool:
    """Whether the example should run in quick mode (``SOFTFLOW_QUICK`` set and not ``0``)."""
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
