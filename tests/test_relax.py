"""The Relaxation module: a differentiable softness leaf, static kind/mode, methods = functions."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import softflow as sf

METHODS = ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal")
X = jnp.array([-1.5, -0.2, 0.0, 0.4, 2.0])
Y = jnp.array([0.3, -0.2, 0.5, 0.4, -1.0])


def test_is_a_module_with_log_softness_as_its_only_leaf():
    relax = sf.Relaxation(0.5, kind="gaussian", mode="straight_through")
    assert isinstance(relax, eqx.Module)
    leaves, treedef = jax.tree_util.tree_flatten(relax)
    assert len(leaves) == 1 and leaves[0] == jnp.log(jnp.float32(0.5))
    np.testing.assert_allclose(relax.softness, 0.5, rtol=1e-7)
    assert jax.tree_util.tree_unflatten(treedef, [jnp.float32(2.0)]).kind == "gaussian"
    assert (relax.kind, relax.mode) == ("gaussian", "straight_through")


@pytest.mark.parametrize("kind", ["logistic", "smootherstep"])
@pytest.mark.parametrize("mode", sf.MODES)
def test_methods_agree_with_the_functions(kind, mode):
    relax = sf.Relaxation(0.7, kind=kind, mode=mode)
    options = {"softness": 0.7, "kind": kind, "mode": mode}
    for name in METHODS:
        np.testing.assert_array_equal(
            getattr(relax, name)(X, Y), getattr(sf, name)(X, Y, **options)
        )
    np.testing.assert_array_equal(relax.between(X, -0.5, Y), sf.between(X, -0.5, Y, **options))


def test_hard_and_with_softness_copies():
    relax = sf.Relaxation(0.7, kind="cauchy")
    hard = relax.hard()
    assert (hard.kind, hard.mode) == ("cauchy", "hard")
    np.testing.assert_allclose(hard.softness, relax.softness, rtol=1e-6)
    np.testing.assert_array_equal(hard.greater(X, Y), (X > Y).astype(jnp.float32))
    annealed = relax.with_softness(0.1)
    assert (annealed.kind, annealed.mode) == ("cauchy", "soft")
    np.testing.assert_allclose([annealed.softness, relax.softness], [0.1, 0.7], rtol=1e-6)


def test_gradient_with_respect_to_the_module_matches_finite_differences(x64):
    x, y = np.asarray(X, np.float64), np.asarray(Y, np.float64)

    def loss(relax):
        return jnp.sum(relax.greater(x, y) * relax.equal(x, 0.1) + relax.between(x, -1.0, 1.0))

    relax = sf.Relaxation(jnp.float64(0.6), kind="reciprocal")
    by_equinox = eqx.filter_jit(eqx.filter_grad(loss))(relax).log_softness
    by_jax = jax.jit(jax.grad(loss))(relax).log_softness
    step, loss_jit = 1e-6, eqx.filter_jit(loss)
    up, down = relax.with_softness(0.6 + step), relax.with_softness(0.6 - step)
    # The leaf is log(softness): d/dlog(tau) = tau d/dtau.
    expected = 0.6 * (loss_jit(up) - loss_jit(down)) / (2 * step)
    np.testing.assert_allclose(by_equinox, expected, rtol=1e-7)
    np.testing.assert_allclose(by_jax, expected, rtol=1e-7)


def test_changing_softness_under_filter_jit_does_not_recompile():
    traces = []

    @eqx.filter_jit
    def f(relax, x):
        traces.append(None)  # runs once per trace
        return relax.greater(x, 0.0)

    values = [f(sf.Relaxation(tau, kind="optimal"), X) for tau in (0.1, 0.5, 3.0)]
    assert len(traces) == 1
    np.testing.assert_allclose(values[2], sf.greater(X, 0.0, softness=3.0, kind="optimal"), 1e-6)
    f(sf.Relaxation(0.5, kind="optimal", mode="hard"), X)  # a static field change retraces
    assert len(traces) == 2


def test_vmap_over_softness():
    relaxations = eqx.filter_vmap(sf.Relaxation)(jnp.array([0.2, 1.0, 5.0]))
    values = eqx.filter_vmap(lambda r: r.greater(0.5, 0.0))(relaxations)
    np.testing.assert_allclose(
        values, [sf.greater(0.5, 0.0, softness=t) for t in (0.2, 1.0, 5.0)], 1e-6
    )


def test_dtype_follows_the_inputs():
    relax = sf.Relaxation(0.5)
    assert relax.greater(X.astype(jnp.bfloat16), 0.0).dtype == jnp.bfloat16
    assert relax.equal(jnp.arange(3), 1).dtype == jnp.float32
    with jax.enable_x64(True):
        assert relax.less(jnp.linspace(0, 1, 3), 0.5).dtype == jnp.float64


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match=r"kind.*'logistic'.*'smootherstep'"):
        sf.Relaxation(0.5, kind="relu")
    with pytest.raises(ValueError, match=r"mode.*'soft', 'hard', 'straight_through'"):
        sf.Relaxation(0.5, mode="stochastic")
    for softness in (0.0, -2.0):
        with pytest.raises(ValueError, match=f"softness.*{softness}"):
            sf.Relaxation(softness)
    with pytest.raises(ValueError, match="softness"):
        sf.Relaxation(1.0).with_softness(-1.0)


def test_integer_softness_is_stored_as_a_float_leaf_with_a_gradient():
    relax = sf.Relaxation(1)
    assert relax.log_softness.dtype == jnp.float32 and relax.softness == 1.0
    grad = eqx.filter_grad(lambda r: r.greater(0.5, 0.0))(relax)
    assert grad.log_softness is not None and grad.log_softness < 0  # softer -> closer to 1/2


def test_training_the_softness_with_optax_keeps_it_positive_and_compiles_once():
    """sgd(10) drove a raw softness leaf to -3.3; the log parametrisation cannot leave (0, inf).

    A weakly typed leaf would also change type after the first update and recompile the step.
    """
    optimiser = optax.sgd(10.0)
    traces = []

    @eqx.filter_jit
    def train_step(relax, state):
        traces.append(None)
        # Minimised by a hard step at the data: pushes the softness down, hard.
        grads = eqx.filter_grad(lambda r: -jnp.sum(r.greater(X, 0.0) * (X > 0)))(relax)
        updates, state = optimiser.update(grads, state)
        return eqx.apply_updates(relax, updates), state

    relax = sf.Relaxation(0.5)
    state = optimiser.init(eqx.filter(relax, eqx.is_array))
    for _ in range(5):
        relax, state = train_step(relax, state)
        assert relax.softness > 0
    assert relax.softness < 0.5 and len(traces) == 1
    assert not relax.log_softness.weak_type


def test_traced_bad_softness_in_the_constructor_raises_where_it_is_used():
    @jax.jit
    def f(tau):
        return sf.Relaxation(tau).greater(1.0, 0.0)

    np.testing.assert_allclose(f(0.5), sf.greater(1.0, 0.0, softness=0.5), rtol=1e-6)
    with pytest.raises(Exception, match="softness must be positive"):
        jax.block_until_ready(f(-1.0))
