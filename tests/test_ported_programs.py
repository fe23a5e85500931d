"""sf.relax on typical numerical programs ported from public code (benchmarks/ported_programs.py).

Each program either runs, with every check of ``relax_programs.check`` passing (hard mode bit for
bit the original and straight-through forward equal to it, in float64 under one ``jit``; soft
gradient finite, non-zero where something was relaxed and equal to central differences of the
soft program; ``vmap`` equal to single calls; the soft program at a tiny softness equal to the
hard one), or is refused with a RelaxError that names the expected primitive, a line of the
program and a way out. ``KNOWN_WRONG`` lists the programs relax runs but gets wrong today, as
strict expected failures, each with its diagnosis: when a rule fixes one, its test passes and
pytest reports it, so that it moves to the programs that run. The programs in ``SLOW`` compile
for long; here they are only traced (runs or refused); those in ``TABLE_ONLY`` trace for long and
are left out; ``benchmarks/relax_programs.py table`` checks them all fully.
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
REFUSED: dict[str, str] = {}

#: Programs relax runs (or crashes on) but gets wrong today: name -> diagnosis.
KNOWN_WRONG: dict[str, str] = {}

#: Programs whose full check compiles for more than ~4 s on jax 0.10.2 (2 CPU cores): traced
#: only here; the table script checks them fully.
SLOW = {
    "bilinear_sample",
    "trilinear_voxels",
    "pid_python_loop",
    "cgp_program",
    "odd_even_network",
    "longest_run_above",
    "sphere_march",
}

#: Programs whose tracing alone takes ~9 s (the loop analysis makes one abstract pass over the
#: body per value the integer state can reach: 40 gears; a program counter and a stack pointer):
#: only the table script checks them. test_relax_mixtures covers their rules on small loops.
TABLE_ONLY = {"gearbox_switch", "stack_machine"}


def _params():
    for p in PROGRAMS:
        if p.name in TABLE_ONLY:
            continue
        marks = ()
        if p.name in KNOWN_WRONG:
            marks = pytest.mark.xfail(strict=True, reason=KNOWN_WRONG[p.name])
        yield pytest.param(p, id=p.name, marks=marks)


def test_the_lists_name_programs_that_exist():
    assert set(REFUSED) | set(KNOWN_WRONG) | SLOW | TABLE_ONLY <= set(PROGRAMS_BY_NAME)
    assert not set(REFUSED) & set(KNOWN_WRONG)
    assert not TABLE_ONLY & (set(REFUSED) | set(KNOWN_WRONG) | SLOW)
    assert len(PROGRAMS) >= 35


@pytest.mark.parametrize("program", list(_params()))
def test_relax_runs_the_program_or_refuses_it_clearly(program):
    outcome = relax_programs.check(program, float32=False, numeric=program.name not in SLOW)
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

    @jax.jit
    def evaluate(v):
        hard = sf.relax(lookup, mode="hard")(v)
        st = sf.relax(lookup, mode="straight_through")(v)
        return relaxed(v), jax.grad(relaxed)(v), hard, st, reference(v), jax.grad(reference)(v)

    value, grad, hard, st, expected, expected_grad = evaluate(x)
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5)
    assert_exactly_equal(hard, lookup(x))
    assert st == lookup(x)
