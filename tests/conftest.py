"""Shared pytest configuration: hypothesis settings and a float64 fixture.

x64 is *not* enabled globally, so that the dtype tests see JAX's default float32; tests that need
float64 (finite differences, identities to machine precision) ask for the ``x64`` fixture or use
``jax.enable_x64(True)`` as a context manager.
"""

import jax
import pytest
from hypothesis import settings

# JAX compilation dominates the cost of an example, so keep the number modest and never time out.
settings.register_profile("softflow", max_examples=30, deadline=None, derandomize=True)
settings.load_profile("softflow")


@pytest.fixture
def x64():
    """Run the test with 64-bit floats enabled (default float dtype float64)."""
    with jax.enable_x64(True):
        yield
