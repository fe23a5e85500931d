"""Shared pytest configuration: hypothesis settings and a float64 fixture.

x64 is *not* enabled globally, so that the dtype tests see JAX's default float32; tests that need
float64 (finite differences, identities to machine precision) ask for the ``x64`` fixture or use
``jax.enable_x64(True)`` as a context manager.
"""

import os
import re

# Each pytest-xdist worker runs on a core of its own: XLA:CPU spreading one worker's loops over
# cores that another worker keeps busy ran them several times slower. (Set before jax starts its
# threads, which inherit the affinity.)
_worker = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
if _worker and hasattr(os, "sched_setaffinity"):
    _cores = sorted(os.sched_getaffinity(0))
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) <= len(_cores):
        os.sched_setaffinity(0, {_cores[int(_worker.group(1)) % len(_cores)]})

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# JAX compilation dominates the cost of an example, so keep the number modest and never time out.
settings.register_profile("softflow", max_examples=30, deadline=None, derandomize=True)
settings.load_profile("softflow")


@pytest.fixture
def x64():
    """Run the test with 64-bit floats enabled (default float dtype float64)."""
    with jax.enable_x64(True):
        yield
