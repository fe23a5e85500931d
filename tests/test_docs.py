"""Checks of the documentation: its generators, and the built site in headless Chromium.

The site checks need ``make docs`` to have built docs/_build/html, plus Chromium, chromedriver
(Debian's ``chromium`` and ``chromium-driver``) and selenium; without them they are skipped, so
that ``make test`` does not need a docs build. ``make docs-check`` sets
``SOFTFLOW_DOCS_CHECK_REQUIRED=1``, which turns every such skip into a failure.
"""

import functools
import http.server
import os
import pathlib
import re
import shutil
import sys
import threading

import jax
import jax.numpy as jnp
import pytest

import softflow as sf

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HTML = DOCS / "_build" / "html"
REQUIRED = os.environ.get("SOFTFLOW_DOCS_CHECK_REQUIRED") == "1"

sys.path.insert(0, str(DOCS / "_ext"))
softflow_docs = pytest.importorskip("softflow_docs", reason="Sphinx is not installed")


def skip_or_fail(reason: str):
    """Skip, or fail where the docs check is required (``make docs-check``)."""
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


# Generators (no build needed).


def test_api_listing_has_one_entry_per_public_name():
    rst = "\n".join(softflow_docs.api_rst_lines(sf))
    documented = re.findall(r"^\.\. auto(?:class|function|data):: softflow\.(\w+)$", rst, re.M)
    assert sorted(documented) == sorted(sf.__all__)


def test_api_listing_uses_the_directive_matching_each_object():
    rst = "\n".join(softflow_docs.api_rst_lines(sf))
    assert ".. autofunction:: softflow.greater\n" in rst
    assert ".. autoclass:: softflow.Relaxation\n   :members:" in rst
    assert ".. autodata:: softflow.KINDS\n" in rst


def test_jaxpr_graph_has_a_node_per_operation_and_wires_inputs_to_output():
    def scaled_hypotenuse(a, b):
        return jnp.sqrt(a**2 + b**2) / 2.0

    closed = jax.make_jaxpr(scaled_hypotenuse)(3.0, 4.0)
    dot = softflow_docs.jaxpr_dot(closed, ["a", "b"], "length")
    operations = re.findall(r'^  op_\d+ \[label="([^"]+)"', dot, re.M)
    assert operations == ["integer_pow 2", "integer_pow 2", "add", "sqrt", "div"]
    edges = set(re.findall(r"^  (\w+) -> (\w+)", dot, re.M))
    assert {("in_0", "op_0"), ("in_1", "op_1"), ("op_4", "out_0")} <= edges
    # The literal 2.0 of the division is drawn as a constant feeding the last operation.
    literal = re.search(r'^  (lit_\d+) \[label="2"', dot, re.M)
    assert literal and (literal.group(1), "op_4") in edges
    assert 'label="length"' in dot and 'label="a"' in dot and 'label="b"' in dot


# The built site.


def built_page(relative: str) -> pathlib.Path:
    path = HTML / relative
    if not path.is_file():
        skip_or_fail(f"{path} does not exist: build the site with `make docs` first")
    return path


def test_api_page_documents_every_public_name():
    html = built_page("api.html").read_text(encoding="utf-8")
    missing = [name for name in sf.__all__ if f'id="softflow.{name}"' not in html]
    assert not missing, f"public names without an entry on the API page: {missing}"


def test_gallery_pages_show_softflow_without_editing_the_import_path():
    # The gallery's configuration puts examples/ on the path (docs/conf.py, run_gallery.py), so a
    # page imports the shared modules by name; every page but the plain-JAX story shows softflow.
    scripts = sorted((ROOT / "examples").glob("*/plot_*.py"))
    assert scripts, "no gallery pages in examples/<theme>/"
    for script in scripts:
        source = script.read_text(encoding="utf-8")
        assert (script.parent / "GALLERY_HEADER.rst").is_file(), f"{script.parent} has no header"
        assert "sys.path" not in source, f"{script} edits sys.path"
        if script.parent.name != "story":
            assert "import softflow as sf" in source, f"{script} does not use softflow"


def gallery_example_pages() -> list[str]:
    # One folder per theme: examples/<theme>/plot_*.py becomes auto_examples/<theme>/<name>.html.
    examples = sorted((ROOT / "examples").glob("*/plot_*.py"))
    return [f"auto_examples/{script.parent.name}/{script.stem}.html" for script in examples]


def test_every_example_has_a_gallery_page_with_a_figure():
    pages = gallery_example_pages()
    if not pages:
        pytest.skip("no gallery examples (examples/<theme>/plot_*.py) exist yet")
    for page in pages:
        html = built_page(page).read_text(encoding="utf-8")
        assert "sphx-glr-single-img" in html or "sphx-glr-multi-img" in html, page


@pytest.fixture(scope="module")
def site_url():
    """The built site, served over HTTP on the loopback interface for the module's tests."""
    built_page("index.html")
    handler = functools.partial(QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by selenium, recording the browser console."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed (pip install -e '.[docs]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        skip_or_fail(
            "Chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


# Resolves once MathJax has typeset the page (at once on pages without math).
WAIT_FOR_MATH = """
const done = arguments[arguments.length - 1];
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    MathJax.startup.promise.then(() => done("ok"), (error) => done(String(error)));
} else {
    done("ok");
}
"""

# Resolves with every image's source, size and load state once all of them have settled.
WAIT_FOR_IMAGES = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images);
images.forEach((img) => { img.loading = "eager"; });
Promise.all(images.map((img) => img.decode().catch(() => null))).then(() => done(
    images.map((img) => [img.currentSrc || img.src, img.complete, img.naturalWidth])));
"""

# Every math element, with whether MathJax replaced it by a non-empty SVG without errors.
MATH_STATE = """
return Array.from(document.querySelectorAll(".math")).map((el) => {
    const svg = el.querySelector("mjx-container svg");
    const ok = svg !== null && svg.getBoundingClientRect().width > 0
        && el.querySelector("[data-mjx-error], merror, mjx-merror") === null;
    return [el.textContent.slice(0, 60), ok];
});
"""

# Graphviz drawings are <object> elements holding an SVG document.
GRAPH_STATE = """
return Array.from(document.querySelectorAll("object.graphviz")).map((obj) => {
    const svg = obj.contentDocument && obj.contentDocument.querySelector("svg");
    return [obj.data, svg !== null && obj.getBoundingClientRect().width > 0];
});
"""


def open_page(browser, url: str) -> dict:
    browser.get_log("browser")  # drop messages of earlier pages
    browser.get(url)
    math_status = browser.execute_async_script(WAIT_FOR_MATH)
    images = browser.execute_async_script(WAIT_FOR_IMAGES)
    return {
        "title": browser.title,
        "math_status": math_status,
        "images": images,
        "math": browser.execute_script(MATH_STATE),
        "graphs": browser.execute_script(GRAPH_STATE),
        "errors": [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"],
    }


def assert_page_sound(page: dict, *, expect_math: bool, expect_images: bool):
    assert not page["errors"], f"console errors: {page['errors']}"
    broken = [src for src, complete, width in page["images"] if not (complete and width > 0)]
    assert not broken, f"images that did not load: {broken}"
    if expect_images:
        assert page["images"], "the page shows no image"
    assert page["math_status"] == "ok", f"MathJax failed: {page['math_status']}"
    unrendered = [text for text, ok in page["math"] if not ok]
    assert not unrendered, f"math not rendered: {unrendered}"
    if expect_math:
        assert page["math"], "the page has no math to render"
    assert all(ok for _, ok in page["graphs"]), f"graphs not drawn: {page['graphs']}"


@pytest.mark.parametrize(
    ("relative", "expect_math", "expect_images"),
    [
        ("index.html", False, False),
        ("intro.html", True, True),
        ("concepts.html", True, True),
        ("api.html", True, False),
        ("auto_examples/index.html", False, False),
    ],
)
def test_page_loads_cleanly(browser, site_url, relative, expect_math, expect_images):
    built_page(relative)
    page = open_page(browser, f"{site_url}/{relative}")
    assert_page_sound(page, expect_math=expect_math, expect_images=expect_images)


def test_intro_draws_the_computation_graph(browser, site_url):
    page = open_page(browser, f"{site_url}/{built_page('intro.html').name}")
    assert page["graphs"], "the introduction shows no computation graph"


def test_gallery_pages_load_with_their_figures(browser, site_url):
    pages = gallery_example_pages()
    if not pages:
        pytest.skip("no gallery examples (examples/<theme>/plot_*.py) exist yet")
    for relative in pages:
        built_page(relative)
        page = open_page(browser, f"{site_url}/{relative}")
        assert_page_sound(page, expect_math=False, expect_images=True)
