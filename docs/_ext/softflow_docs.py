"""Sphinx helpers for the softflow site: the API listing, the jaxpr graph and optional pages.

* ``softflow-api`` — autodoc entries for every name in ``softflow.__all__``, grouped by the module
  that defines it, so that a new public name appears on the API page without editing it.
* ``jaxpr-graph`` — runs the Python code in its body, traces one function of it with
  :func:`jax.make_jaxpr` and draws the resulting computation graph with graphviz.
* ``optional_include`` — replaces the text of a page by an include of a file at the repository
  root when that file exists (BENCHMARKS.md is written by the benchmark harness).
* ``GifScraper`` — a sphinx-gallery image scraper that embeds the GIF animations an example saved;
  ``example_argv`` gives the examples the ``__file__`` they expect.
"""

import inspect
import pathlib
import shutil

import jax
import jax.extend
from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.ext.graphviz import graphviz
from sphinx.util.docutils import SphinxDirective

# Section titles of the API page, in page order, keyed by the private module defining the names.
API_SECTIONS = {
    "softflow._compare": "Comparisons",
    "softflow._logic": "Logic",
    "softflow._branch": "Branching",
    "softflow._loop": "Loops",
    "softflow._select": "Selection",
    "softflow._sort": "Sorting",
    "softflow._index": "Soft indexing",
    "softflow._steps": "Elementwise steps",
    "softflow._count": "Counting",
    "softflow._relax": "Relaxation",
    "softflow._program": "Relaxing whole programs",
    "softflow._smooth": "Smoothing",
    "softflow._gradient_check": "Which gradient to trust",
    "softflow._kinds": "Soft steps",
}
CONSTANTS_SECTION = "Constants"
OTHER_SECTION = "Other"

# Descriptions of public constants, which cannot carry docstrings of their own.
CONSTANT_DESCRIPTIONS = {
    "KINDS": "The soft step families accepted as ``kind=`` (see :func:`softflow.sigmoid`).",
    "MODES": "The evaluation modes accepted as ``mode=``: relaxation, exact, straight-through.",
    "TNORMS": "The t-norms accepted as ``tnorm=`` by the logical connectives.",
    "SEMANTICS": "The loop semantics accepted as ``semantics=`` by :func:`softflow.soft_while`.",
    "ESTIMATORS": "The gradient estimators accepted as ``estimator=`` by :func:`softflow.smooth`.",
    "SORTING_METHODS": "The soft sorts accepted as ``method=`` by :func:`softflow.sort` and its "
    "relatives: the sorting networks ``odd_even`` and ``bitonic``, and the dense softmax "
    "relaxations ``softsort`` and ``neuralsort``.",
}


def _api_section(obj) -> str:
    if not (inspect.isclass(obj) or callable(obj)):
        return CONSTANTS_SECTION
    module = getattr(obj, "__module__", None) or ""
    while module:  # a module of a private package (softflow._program._api) goes with the package
        if module in API_SECTIONS:
            return API_SECTIONS[module]
        module = module.rpartition(".")[0]
    return OTHER_SECTION


def api_rst_lines(package) -> list[str]:
    """reStructuredText with one autodoc entry per name in ``package.__all__``."""
    order = [*API_SECTIONS.values(), OTHER_SECTION, CONSTANTS_SECTION]
    sections: dict[str, list[str]] = {title: [] for title in order}
    for name in package.__all__:
        sections[_api_section(getattr(package, name))].append(name)
    lines = []
    for title in order:
        names = sorted(sections[title], key=str.lower)
        if not names:
            continue
        lines += [title, "-" * len(title), ""]
        for name in names:
            obj = getattr(package, name)
            qualified = f"{package.__name__}.{name}"
            if inspect.isclass(obj) and issubclass(obj, tuple):
                # A NamedTuple documents its fields in its docstring's Attributes section.
                lines += [f".. autoclass:: {qualified}", ""]
            elif inspect.isclass(obj):
                lines += [f".. autoclass:: {qualified}", "   :members:", ""]
            elif callable(obj):
                lines += [f".. autofunction:: {qualified}", ""]
            else:
                description = CONSTANT_DESCRIPTIONS.get(name, f"Public constant ``{name}``.")
                lines += [f".. autodata:: {qualified}", "", f"   {description}", ""]
    return lines


class SoftflowApiDirective(SphinxDirective):
    """Expands to the autodoc entries of every public name of softflow."""

    has_content = False

    def run(self):
        import softflow

        source = self.get_source_info()[0]
        lines = StringList(api_rst_lines(softflow), source=source)
        self.state_machine.insert_input(lines, source)
        return []


def jaxpr_dot(closed_jaxpr, arg_names, output_name: str) -> str:
    """Graphviz DOT source of a closed jaxpr: inputs, one node per operation, the output."""
    jaxpr = closed_jaxpr.jaxpr
    lines = [
        "digraph jaxpr {",
        '  rankdir="LR";',
        '  node [fontname="sans-serif", fontsize=11];',
        '  edge [color="#666666"];',
    ]
    producer = {}  # jaxpr variable -> graph node that computes it
    for index, (name, var) in enumerate(zip(arg_names, jaxpr.invars, strict=True)):
        node = f"in_{index}"
        producer[var] = node
        lines.append(
            f'  {node} [label="{name}", shape=ellipse, style=filled, fillcolor="#cfe3ff"];'
        )
    for index, var in enumerate(jaxpr.constvars):
        node = f"const_{index}"
        producer[var] = node
        lines.append(f'  {node} [label="const", shape=box, style=rounded];')
    literal_count = 0
    for index, eqn in enumerate(jaxpr.eqns):
        node = f"op_{index}"
        label = eqn.primitive.name
        if "y" in eqn.params:  # integer_pow's exponent
            label += f" {eqn.params['y']}"
        lines.append(
            f'  {node} [label="{label}", shape=box, style="rounded,filled", fillcolor="#fff2cc"];'
        )
        for position, invar in enumerate(eqn.invars):
            if isinstance(invar, jax.extend.core.Literal):  # a constant written into the program
                source = f"lit_{literal_count}"
                literal_count += 1
                value = f"{float(invar.val):.4g}"
                lines.append(f'  {source} [label="{value}", shape=plaintext, fontsize=10];')
            else:
                source = producer[invar]
            port = f' [label="{position}", fontsize=8]' if len(eqn.invars) > 1 else ""
            lines.append(f"  {source} -> {node}{port};")
        for outvar in eqn.outvars:
            producer[outvar] = node
    for index, outvar in enumerate(jaxpr.outvars):
        node = f"out_{index}"
        lines.append(
            f'  {node} [label="{output_name}", shape=ellipse, style=filled, fillcolor="#d9f2d9"];'
        )
        lines.append(f"  {producer[outvar]} -> {node};")
    lines.append("}")
    return "\n".join(lines)


class JaxprGraphDirective(SphinxDirective):
    """Show Python code, then the computation graph that JAX records for one of its functions.

    The argument names the function; ``:args:`` gives the example arguments it is traced with
    (a comma-separated list of floats) and ``:output:`` labels the result node.
    """

    required_arguments = 1
    has_content = True
    option_spec = {  # noqa: RUF012 (docutils reads this class attribute)
        "args": directives.unchanged_required,
        "output": directives.unchanged,
        "caption": directives.unchanged,
    }

    def run(self):
        self.env.note_dependency(__file__)  # reread the page when the drawing code changes
        code = "\n".join(self.content)
        namespace: dict = {}
        exec(compile(code, self.get_source_info()[0], "exec"), namespace)
        function = namespace[self.arguments[0]]
        example_args = [float(a) for a in self.options["args"].split(",")]
        arg_names = list(inspect.signature(function).parameters)
        closed = jax.make_jaxpr(function)(*example_args)
        code_block = nodes.literal_block(code, code, language="python")
        graph = graphviz()
        graph["code"] = jaxpr_dot(closed, arg_names, self.options.get("output", "result"))
        graph["options"] = {"docname": self.env.docname}
        graph["alt"] = f"computation graph of {self.arguments[0]}"
        result = [code_block]
        if "caption" in self.options:
            figure = nodes.figure("", graph, nodes.caption("", self.options["caption"]))
            figure["align"] = "center"
            result.append(figure)
        else:
            result.append(graph)
        return result


class GifScraper:
    """sphinx-gallery scraper embedding GIF files that an example wrote to the gallery folder.

    Examples save their animations to ``SOFTFLOW_GALLERY_OUT``; after each code block, every GIF
    there that is new or was rewritten since the previous check is copied next to the gallery's
    images and shown.
    """

    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        self.seen = self._snapshot()

    def _snapshot(self) -> dict[pathlib.Path, int]:
        if not self.folder.is_dir():
            return {}
        return {path: path.stat().st_mtime_ns for path in self.folder.glob("*.gif")}

    def __call__(self, block, block_vars, gallery_conf):
        from sphinx_gallery.scrapers import figure_rst

        current = self._snapshot()
        fresh = sorted(path for path, stamp in current.items() if self.seen.get(path) != stamp)
        self.seen = current
        image_paths = []
        for gif, image_path in zip(fresh, block_vars["image_path_iterator"], strict=False):
            target = pathlib.Path(image_path).with_suffix(".gif")
            shutil.copyfile(gif, target)
            image_paths.append(str(target))
        return figure_rst(image_paths, gallery_conf["src_dir"])

    def __repr__(self):  # sphinx-gallery compares configurations by repr
        return f"GifScraper({str(self.folder)!r})"


# The gallery follows the story of the docs: the terrain, then loops, then the Game of Life.
GALLERY_ORDER = ("plot_terrain_classic", "plot_terrain", "plot_learned", "plot_game_of_life")


class StoryOrder:
    """sphinx-gallery ``within_subsection_order``: examples by ``GALLERY_ORDER``, then by name.

    Examples whose file name matches none of the prefixes come after the listed ones.
    """

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename: str):
        rank = next(
            (i for i, prefix in enumerate(GALLERY_ORDER) if filename.startswith(prefix)),
            len(GALLERY_ORDER),
        )
        return (rank, filename)

    def __repr__(self):  # sphinx-gallery compares configurations by repr
        return "StoryOrder"


def reset_jax(gallery_conf, fname) -> None:
    """Give every gallery page JAX's defaults: a page that enables float64 (the lake fit needs
    it) must not turn the next page's parameters into float64."""
    jax.config.update("jax_enable_x64", False)


def example_argv(gallery_conf, script_vars) -> list[str]:
    """sphinx-gallery ``reset_argv`` hook: no command-line arguments, and ``__file__`` defined.

    sphinx-gallery runs an example in a fresh ``__main__`` namespace without ``__file__``, but the
    examples locate their sibling modules with it, as they do when run as scripts. This hook is
    the one sphinx-gallery calls with the example's namespace before its first line runs.
    """
    script_vars["example_globals"]["__file__"] = str(script_vars["src_file"])
    return []


def optional_include(app, docname, source):
    """Swap the text of an ``optional-includes`` page for an include of its file, if present."""
    relative = app.config.optional_includes.get(docname)
    if relative is None:
        return
    path = pathlib.Path(app.srcdir, relative).resolve()
    if path.is_file():
        source[0] = f"```{{include}} {relative}\n```\n"


def always_reread_optional(app, env, added, changed, removed):
    """Pages that include optional files are reread, since the file may have appeared since."""
    return [name for name in app.config.optional_includes if name in env.found_docs]


def setup(app):
    app.add_config_value("optional_includes", {}, "env")
    app.add_directive("softflow-api", SoftflowApiDirective)
    app.add_directive("jaxpr-graph", JaxprGraphDirective)
    app.connect("source-read", optional_include)
    app.connect("env-get-outdated", always_reread_optional)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


__all__ = ["GifScraper", "StoryOrder", "api_rst_lines", "example_argv", "jaxpr_dot", "setup"]
