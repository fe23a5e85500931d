"""Sphinx configuration of the softflow documentation site (built by ``make docs``)."""

import os
import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
# The gallery pages import the modules they share (examples/_gallery.py, examples/terrain.py) by
# name: the examples folder is on the path for the whole build, as run_gallery.py does for
# `make gallery`, so no page edits sys.path.
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

from _gallery import THEMES  # noqa: E402 (needs the path above)
from softflow_docs import GifScraper  # noqa: E402 (needs the path above)

import softflow  # noqa: E402

# The gallery runs the examples in quick mode and keeps their files inside the build folder.
os.environ.setdefault("SOFTFLOW_QUICK", "1")
os.environ.setdefault("SOFTFLOW_GALLERY_OUT", str(DOCS / "_build" / "gallery-out"))
os.environ.setdefault("MPLBACKEND", "Agg")
GALLERY_OUT = pathlib.Path(os.environ["SOFTFLOW_GALLERY_OUT"])
GALLERY_OUT.mkdir(parents=True, exist_ok=True)

# MathJax is served from the site itself (the site works offline); make docs fetches it.
MATHJAX_DIR = DOCS / "_build" / "vendor" / "mathjax"
MATHJAX_FILE = "tex-svg-full.js"
if not (MATHJAX_DIR / MATHJAX_FILE).is_file():
    raise RuntimeError(
        f"{MATHJAX_DIR / MATHJAX_FILE} is missing: run `make docs` (or "
        "docs/_tools/fetch_mathjax.sh), which fetches MathJax from the npm registry."
    )

project = "softflow"
author = "softflow developers"
copyright = "softflow developers"
release = softflow.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.graphviz",
    "sphinx.ext.viewcode",
    "matplotlib.sphinxext.plot_directive",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "softflow_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/**.ipynb", "auto_examples/**.py", "**/*.zip"]
templates_path: list[str] = []

# Narrative pages are MyST Markdown.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference from Google-style docstrings.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"exclude-members": "__init__"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Pages whose text becomes an include of a repository file once that file exists.
optional_includes = {"benchmarks": "../BENCHMARKS.md"}

# Math is typeset in the browser by a local copy of MathJax 3 (SVG output, no web fonts).
html_static_path = [str(MATHJAX_DIR), "_static"]
mathjax_path = MATHJAX_FILE
mathjax3_config = {"options": {"enableMenu": False}}

# Figures computed at build time by scripts in docs/figures.
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 144)]

graphviz_output_format = "svg"
graphviz_dot_args = ["-Gbgcolor=transparent"]

sphinx_gallery_conf = {
    "examples_dirs": str(EXAMPLES),
    "gallery_dirs": "auto_examples",
    # One section per theme, each a subfolder of examples/ with its GALLERY_HEADER.rst, in the
    # order of THEMES (a folder missing from THEMES is a configuration error).
    "subsection_order": [os.path.relpath(EXAMPLES / theme, DOCS) for theme in THEMES],
    # Only plot_*.py are gallery pages; helper modules and the runner are not.
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"(^|/)(?!plot_)[^/]*\.py$",
    "within_subsection_order": "softflow_docs.StoryOrder",
    "image_scrapers": ("matplotlib", GifScraper(GALLERY_OUT)),
    "reset_modules": ("matplotlib", "softflow_docs.reset_jax"),
    "reset_argv": "softflow_docs.example_argv",
    "remove_config_comments": True,
    "show_memory": False,
    "write_computation_times": False,
    "capture_repr": (),
}

html_theme = "furo"
html_title = f"softflow {release}"
html_favicon = "_static/favicon.svg"
