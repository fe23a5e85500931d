"""The public API: every exported name is documented with a formula and an example that runs."""

import doctest
import importlib
import pkgutil

import pytest

import softflow as sf

# Every private module, those of private packages (softflow._program._api) included.
PRIVATE_MODULES = sorted(
    info.name.removeprefix("softflow.")
    for info in pkgutil.walk_packages(sf.__path__, prefix="softflow.")
    if info.name.split(".")[1].startswith("_")
)


@pytest.mark.parametrize("name", sf.__all__)
def test_public_name_exists_and_is_documented(name):
    obj = getattr(sf, name)
    if name.isupper():  # a constant: the tuple of accepted choices for a keyword
        assert isinstance(obj, tuple) and obj and all(isinstance(v, str) for v in obj)
        return
    doc = obj.__doc__ or ""
    assert doc.strip(), f"{name} has no docstring"
    if not (isinstance(obj, type) and issubclass(obj, Exception)):  # errors have no formula
        assert ":math:" in doc or ".. math::" in doc, f"{name}: docstring has no formula"
    assert ">>>" in doc, f"{name}: docstring has no example"


def test_version_and_all_are_consistent():
    assert isinstance(sf.__version__, str) and sf.__version__
    assert len(set(sf.__all__)) == len(sf.__all__)
    assert {"KINDS", "MODES", "TNORMS"} <= set(sf.__all__)


@pytest.mark.parametrize("module_name", PRIVATE_MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(f"softflow.{module_name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
