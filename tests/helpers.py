"""Test helpers: pytree comparison and a central finite-difference gradient in float64."""

import jax
import jax.numpy as jnp
import numpy as np

import softflow as sf

# Every comparison with a uniform signature f(x, y, **options); ``between`` is tested separately.
BINARY_COMPARISONS = (
    sf.greater,
    sf.greater_equal,
    sf.less,
    sf.less_equal,
    sf.equal,
    sf.not_equal,
)


def tree_allclose(a, b, *, rtol=1e-6, atol=0.0) -> bool:
    """Whether two pytrees have the same structure and leafwise close values of the same dtype."""
    if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
        return False
    return all(
        jnp.result_type(u) == jnp.result_type(v)
        and np.allclose(np.asarray(u, np.float64), np.asarray(v, np.float64), rtol=rtol, atol=atol)
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def assert_exactly_equal(a, b) -> None:
    """Assert two pytrees are equal leaf by leaf with no tolerance: same dtype, shape, values.

    NaNs in the same places count as equal (values compare with ``==`` otherwise); a zero must
    have the same sign.
    """
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        u, v = np.asarray(u), np.asarray(v)
        assert u.dtype == v.dtype, (u.dtype, v.dtype)
        assert u.shape == v.shape, (u.shape, v.shape)
        np.testing.assert_array_equal(u, v, strict=True)
        if np.issubdtype(u.dtype, np.floating):  # and the signs of zeros
            zero = u == 0
            np.testing.assert_array_equal(np.signbit(u[zero]), np.signbit(v[zero]))


def central_differences(f, args, step=1e-6):
    """Partial derivatives of the scalar function ``f`` by central differences, one per argument.

    ``args`` are arrays of a common batch shape; ``f`` takes one scalar per argument and is
    applied elementwise, so entry ``[i][b]`` is df/d(args[i]) at point b. Call it with x64
    enabled: the error is O(step²) from truncation plus O(eps / step) ≈ 1e-10 from rounding.
    """
    args = tuple(jnp.asarray(a) for a in args)
    f_batched = jax.vmap(f)
    partials = []
    for i in range(len(args)):
        up = (*args[:i], args[i] + step, *args[i + 1 :])
        down = (*args[:i], args[i] - step, *args[i + 1 :])
        partials.append((f_batched(*up) - f_batched(*down)) / (2 * step))
    return tuple(partials)


def assert_grad_matches_finite_differences(f, args, *, rtol=1e-6, atol=1e-8, grad_fn=None):
    """Compare the autodiff gradient of the scalar ``f`` with central differences, at many points.

    ``args`` are float64 arrays of a common batch shape (one point per entry), and x64 must be
    enabled. ``grad_fn`` (default ``f``) is the function whose autodiff gradient is checked against
    the finite differences of ``f``: for a straight-through estimator, whose gradient is by design
    that of the soft function.
    """
    grad_fn = f if grad_fn is None else grad_fn
    args = jnp.broadcast_arrays(*(jnp.asarray(a, jnp.float64) for a in args))
    argnums = tuple(range(len(args)))
    grads = jax.jit(jax.vmap(jax.grad(grad_fn, argnums)))(*args)
    expected = jax.jit(lambda *a: central_differences(f, a))(*args)
    for i, (grad, reference) in enumerate(zip(grads, expected, strict=True)):
        np.testing.assert_allclose(grad, reference, rtol=rtol, atol=atol, err_msg=f"argument {i}")


def present_winners(x, q, tau):
    """For elements present with probabilities ``q`` (independently), the probability that each
    is the present minimum, written out with the logistic step: present, and every other element
    absent or above it; and the probability that none is present. (The law of
    ``jnp.argmin(jnp.where(keep, x, jnp.inf))`` with ``keep`` relaxed.)"""
    x, q = np.asarray(x, np.float64), np.asarray(q, np.float64)
    n = len(x)
    below = 1 / (1 + np.exp((x[:, None] - x[None, :]) / tau))  # [i, j]: i below j
    w = np.array(
        [
            q[i] * np.prod([1 - q[j] + q[j] * below[i, j] for j in range(n) if j != i])
            for i in range(n)
        ]
    )
    nothing = np.prod(1 - q)
    total = w.sum() + nothing
    return w / total, nothing / total
