"""The relax package: the version-dependent jaxpr layout is read in one place, the package has no
import circle, and a discontinuity without a soft rule is never a silent zero gradient."""

import ast
import pathlib
import re
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import softflow as sf
from softflow._program import _jaxpr

PACKAGE = pathlib.Path(sf.__file__).parent / "_program"
ROOT = pathlib.Path(__file__).parent.parent


def _equation(fn, *args, primitive):
    """The first equation of ``primitive`` in the jaxpr of ``fn`` (searched depth first)."""

    def search(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == primitive:
                return eqn
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                found = search(sub)
                if found is not None:
                    return found
        return None

    found = search(jax.make_jaxpr(fn)(*args).jaxpr)
    assert found is not None, f"no {primitive} in the jaxpr"
    return found


def test_scan_layout_counts_consts_carry_and_xs():
    x = jnp.arange(4.0)

    def body(carry, a):
        u, (v, w) = carry
        return (u + a * x[1], (v * u, w + 1)), {"p": u * a, "q": (v, w)}

    eqn = _equation(lambda x: lax.scan(body, (0.0, (1.0, 2)), x), x, primitive="scan")
    layout = _jaxpr.scan(eqn)
    n_xs = len(eqn.invars) - layout.num_consts - layout.num_carry
    assert layout.num_carry >= 1 and n_xs == 1 and layout.length == 4 and not layout.reverse
    assert len(layout.body.jaxpr.invars) == len(eqn.invars)
    assert len(layout.body.jaxpr.outvars) == len(eqn.outvars)
    # the carry comes first among the outputs, with the avals of the carried operands
    carried = eqn.invars[layout.num_consts : layout.num_consts + layout.num_carry]
    assert [v.aval.shape for v in eqn.outvars[: layout.num_carry]] == [
        v.aval.shape for v in carried
    ]


@pytest.mark.parametrize(
    ("fn", "primitive", "inner"),
    [
        (lambda x: lax.while_loop(lambda c: c[0] < 3, lambda c: c * 2, x), "while", 2),
        (lambda x: lax.cond(x[0] > 0, lambda: x, lambda: -x), "cond", 2),
        (lambda x: jnp.where(x > 1, x, 0), "jit", 1),
        (jax.nn.relu, "custom_jvp_call", 1),
    ],
    ids=["while", "cond", "jit", "custom_jvp"],
)
def test_inner_jaxprs_are_read_with_their_constants(fn, primitive, inner):
    eqn = _equation(fn, jnp.arange(4.0), primitive=primitive)
    if primitive == "while":
        layout = _jaxpr.while_loop(eqn)
        closed = [layout.cond, layout.body]
        n_consts = layout.cond_nconsts + layout.body_nconsts
        assert len(eqn.invars) == n_consts + len(eqn.outvars)
    elif primitive == "cond":
        closed = _jaxpr.cond_branches(eqn)
    elif primitive == "jit":
        closed = [_jaxpr.call_body(eqn)]
        assert _jaxpr.call_name(eqn) == "_where"
    else:
        closed = [_jaxpr.custom_body(eqn)]
    assert len(closed) == inner
    for c in closed:
        assert len(c.consts) == len(c.jaxpr.constvars)


def test_checkpoint_and_scatter_and_top_k_layouts():
    remat = _equation(jax.checkpoint(lambda x: jnp.sin(x) * 2), jnp.ones(3), primitive="remat2")
    assert _jaxpr.remat(remat).prevent_cse is True
    scatter = _equation(lambda x, i: x.at[i].set(3.0), jnp.ones(3), 1, primitive="scatter")
    layout = _jaxpr.scatter(scatter)
    assert layout.operand_dims == (0,) and layout.inserted_dims == (0,) and not layout.combines
    add = _equation(lambda x, i: x.at[i].add(3.0), jnp.ones(3), 1, primitive="scatter-add")
    assert _jaxpr.scatter(add).combines
    top = _equation(lambda x: lax.top_k(x, 2), jnp.ones((2, 5)), primitive="top_k")
    assert _jaxpr.top_k(top) == (2, 1)


def test_an_unknown_layout_names_primitive_version_and_range():
    eqn = _equation(lambda x: lax.fori_loop(0, 3, lambda i, c: c * 2, x), 1.0, primitive="scan")
    params = {k: v for k, v in eqn.params.items() if k not in ("num_consts", "num_carry", "ft_in")}
    with pytest.raises(sf.RelaxError) as error:
        _jaxpr.scan(eqn.replace(params=params))
    message = str(error.value)
    assert "`scan`" in message and jax.__version__ in message
    assert _jaxpr.TESTED_JAX[0] in message and _jaxpr.TESTED_JAX[1] in message
    with pytest.raises(sf.RelaxError, match=r"`scan`.*no parameter 'num_carry'; it has \["):
        _jaxpr.param(eqn.replace(params=params), "num_carry")


def test_rules_never_read_equation_parameters_themselves():
    for path in PACKAGE.glob("*.py"):
        if path.name == "_jaxpr.py":
            continue
        text = path.read_text()
        assert not re.search(r"params\[|params\.get\(|\.params\b(?!\))", text), path.name


def _imports(path: pathlib.Path) -> set[str]:
    """The modules of the package that ``path`` imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module)
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_the_package_has_no_import_circle_and_small_files():
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {name: _imports(path) & set(modules) for name, path in modules.items()}
    # depth-first search for a cycle
    state: dict[str, int] = {}

    def visit(name, chain):
        if state.get(name) == 1:
            raise AssertionError(f"import circle: {' -> '.join([*chain, name])}")
        if state.get(name) == 2:
            return
        state[name] = 1
        for other in graph[name]:
            visit(other, [*chain, name])
        state[name] = 2

    for name in graph:
        visit(name, [])
    # the converter is independent of the interpreter and its rules
    converter = {n for n in graph if n.startswith("_syntax")}
    reached = set()
    stack = list(converter)
    while stack:
        name = stack.pop()
        for other in graph[name] - reached:
            reached.add(other)
            stack.append(other)
    assert not reached & {"_interpreter", "_api", "_rules_logic", "_rules_control"}, reached
    for path in modules.values():
        assert len(path.read_text().splitlines()) <= 600, path.name


def test_tested_versions_are_the_declared_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    jax_bound = next(d for d in project["dependencies"] if d.startswith("jax>="))
    assert jax_bound == f"jax>={_jaxpr.TESTED_JAX[0]}"
    oldest = (ROOT / ".ci" / "constraints-oldest.txt").read_text()
    assert f"jax=={_jaxpr.TESTED_JAX[0]}" in oldest


def _bits(x):
    """An integer bit trick on a float: the lowest bit of its representation."""
    return (lax.bitcast_convert_type(x, jnp.int32) & 1).astype(x.dtype)


def _blended_bits(x):  # line of the bit trick, named by the error
    y = jnp.where(x > 0.0, x, 2.0 * x)
    return y + _bits(y)


def test_an_unrelaxable_primitive_is_an_error_naming_it_and_the_line():
    with pytest.raises(sf.RelaxError) as error:
        sf.relax(_blended_bits)(jnp.float32(1.5))
    message = str(error.value)
    assert "bitcast_convert_type" in message
    line = next(
        i
        for i, text in enumerate(ROOT.joinpath(__file__).read_text().splitlines(), 1)
        if "lax.bitcast_convert_type(x, jnp.int32)" in text
    )
    assert re.search(rf"test_relax_package\.py:{line}\b", message), message
    assert "on_unrelaxable='stop_gradient'" in message
    with pytest.raises(sf.RelaxError, match="bitcast_convert_type"):
        sf.relax(_blended_bits).explain(jnp.float32(1.5))


def test_on_unrelaxable_stop_gradient_keeps_it_exact_and_explains():
    relaxed = sf.relax(_blended_bits, on_unrelaxable="stop_gradient", softness=0.1)
    x = jnp.float32(1.5)
    soft_y = sf.soft_where(sf.greater(x, 0.0, softness=0.1), x, 2.0 * x)
    np.testing.assert_array_equal(relaxed(x), soft_y + _bits(soft_y))
    # the gradient through the bits stops; through y it is the soft where's
    grad_y = jax.grad(lambda v: sf.soft_where(sf.greater(v, 0.0, softness=0.1), v, 2.0 * v))(x)
    np.testing.assert_allclose(jax.grad(relaxed)(x), grad_y, rtol=1e-6)
    rules = [op.rule for op in relaxed.explain(x)]
    assert "not relaxed: exact value, the gradient stops here" in rules
    hard = sf.relax(_blended_bits, on_unrelaxable="stop_gradient", mode="hard")
    np.testing.assert_array_equal(hard(x), _blended_bits(x))
    with pytest.raises(ValueError, match="on_unrelaxable"):
        sf.relax(_blended_bits, on_unrelaxable="ignore")


def test_a_bit_trick_on_an_exact_value_is_fine():
    # the integer input is not a float input of fn: nothing is relaxed, no error
    def fn(x, n):
        return x * (lax.population_count(n) & 1).astype(x.dtype)

    x = jnp.float32(2.0)
    assert sf.relax(fn)(x, jnp.int32(7)) == fn(x, jnp.int32(7))
