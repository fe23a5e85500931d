"""sf.relax on typical numerical programs ported from public code (benchmarks/ported_programs.py).

Each program either runs, with every check of ``relax_programs.check`` passing (hard mode bit for
bit the original and straight-through forward equal to it, in float64 under one ``jit``; soft
gradient finite, non-zero where something was relaxed and equal to central differences of the
soft program; ``vmap`` equal to single calls; the soft program at a tiny softness equal to the
hard one), or is refused with a RelaxError that names the expected primitive, a line of the
program and a way out. ``KNOWN_WRONG`` lists the programs relax runs but gets wrong today, as
strict expected failures, each with its diagnosis: when a rule fixes one, its test passes and
pytest reports it, so that it moves to the programs that run.
"""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_exactly_equal

import softflow as sf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))

import relax_programs
from ported_programs import PROGRAMS, PROGRAMS_BY_NAME

#: Programs refused today, with the primitive the RelaxError names.
REFUSED = {
    "bilinear_sample": "gather",
    "trilinear_voxels": "gather",
    "map_coordinates_linear": "gather",
    "histogram_by_floor": "scatter-add",
    "histogram_jnp": "scatter-add",
    "bincount_bins": "scatter-add",
    "segment_pooling": "scatter-add",
    "gamma_lut": "gather",
    "rule30_table": "gather",
    "knn_classify": "scatter-add",
    "knn_top_k": "top_k",
    "gearbox_switch": "dynamic_slice",
    "nucleus_top_p": "sort",
    "top_k_mask": "top_k",
    "spearman": "sort",
    "cgp_program": "dynamic_slice",
    "stack_machine": "dynamic_slice",
    "wrap_angle": "rem",
    "insertion_sort": "scatter",
}

#: Programs relax runs (or crashes on) but gets wrong today: name -> diagnosis.
KNOWN_WRONG = {
    "life_rule_table": "table[alive, count] with two per-element relaxed indices: the gather "
    "index is a concatenate of two categoricals, and structural_categorical cannot broadcast "
    "their probabilities (ValueError)",
    "dijkstra_dense": "jnp.inf as the distance of unreached / visited nodes: blended by a soft "
    "where and read by a soft argmin, 0 * inf makes the soft forward and gradient NaN",
    "fsm_detector": "table[state, symbol] reads an integer table at a relaxed index: the "
    "dynamic_slice rule casts the probabilities to the table's integer dtype (silently 0 in "
    "float32, a dtype error under x64)",
    "ray_trace_spheres": "jnp.inf for rays that miss: the soft where blends inf and the soft "
    "argmin / min see it, so the gradient is NaN",
    "absmax_int8": "round(x).astype(int8): the conversion relaxes floor(x) + [x < 0] again on a "
    "value that is already an integer, which sits on a jump (half a step off at any softness)",
}


def _params():
    for p in PROGRAMS:
        marks = ()
        if p.name in KNOWN_WRONG:
            marks = pytest.mark.xfail(strict=True, reason=KNOWN_WRONG[p.name])
        yield pytest.param(p, id=p.name, marks=marks)


def test_the_lists_name_programs_that_exist():
    assert set(REFUSED) <= set(PROGRAMS_BY_NAME)
    assert set(KNOWN_WRONG) <= set(PROGRAMS_BY_NAME)
    assert not set(REFUSED) & set(KNOWN_WRONG)
    assert len(PROGRAMS) >= 35


@pytest.mark.parametrize("program", list(_params()))
def test_relax_runs_the_program_or_refuses_it_clearly(program):
    outcome = relax_programs.check(program, float32=False)
    if program.name in REFUSED:
        assert outcome.status == "refused", (
            f"{program.name} is no longer refused ({outcome.status}: {outcome.reason}): "
            "move it out of REFUSED"
        )
        refusal = outcome.refusal
        assert refusal.primitive == REFUSED[program.name], refusal.message
        assert refusal.in_program, f"the message does not point at the program: {refusal.message}"
        assert refusal.advice, f"the message gives no way out: {refusal.message}"
    else:
        assert outcome.status == "runs", f"{outcome.status}: {outcome.reason}"
        assert not outcome.failures


def test_an_integer_table_read_at_a_relaxed_index_is_a_distribution_over_its_entries():
    # The dynamic_slice rule once cast the probabilities to the table's integer dtype: the
    # relaxed value was 0 with no gradient (the finite-state machine above read its table so).
    table = jnp.array([3, 5, 7, 11], jnp.int32)

    def lookup(x):
        return table[jnp.argmax(x)]

    x = jnp.array([0.1, 0.5, 0.3, -0.2])
    relaxed = sf.relax(lookup, softness=0.3)

    def reference(v):
        return sf.argmax(v, softness=0.3) @ table.astype(v.dtype)

    np.testing.assert_allclose(relaxed(x), reference(x), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(relaxed)(x), jax.grad(reference)(x), rtol=1e-5)
    assert_exactly_equal(sf.relax(lookup, mode="hard")(x), lookup(x))
    assert sf.relax(lookup, mode="straight_through")(x) == lookup(x)
