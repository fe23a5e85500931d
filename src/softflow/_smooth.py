"""Stochastic smoothing: the Gaussian-smoothed exact program and unbiased estimates of its gradient.

Relaxation (:func:`softflow.relax`) changes the program: every condition becomes a blend. Smoothing
keeps the program exact and averages it over random perturbations of its inputs,

.. math:: F(x) = \\mathbb{E}_{\\varepsilon \\sim \\mathcal{N}(0, I)}\\, f(x + \\sigma\\varepsilon),

a smooth function even when ``f`` jumps. Its gradient is itself an expectation,
:math:`\\nabla F(x) = \\mathbb{E}[f(x + \\sigma\\varepsilon)\\,\\varepsilon] / \\sigma` (Stein's
identity), which samples of the exact program estimate without differentiating it: integer bit
tricks, hashes, table lookups and loops that JAX cannot reverse-differentiate are all fine.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from ._checks import check_choice, check_int, is_concrete, softness_array

Estimator = Literal["antithetic", "score", "pathwise"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)
Baseline = Literal["mean", "center", "none"]
BASELINES: tuple[str, ...] = get_args(Baseline)


# ----------------------------------------------------------------------------------------------
# The estimate's derivative rule


@jax.custom_jvp
def _with_estimate(value, x, directions, differences):
    """``value``, whose derivative with respect to ``x`` is the score-function estimate.

    ``directions[j]`` is the perturbation of sample ``j`` divided by the scale (a pytree like
    ``x`` with a leading sample axis), ``differences[j]`` the weighted output of sample ``j``
    (a pytree like ``value`` with a leading sample axis). The tangent along ``dx`` is
    :math:`\\sum_j \\mathrm{differences}_j \\langle \\mathrm{directions}_j, dx \\rangle`, linear in
    ``dx``, so reverse mode (the transpose) gives
    :math:`\\sum_j \\langle \\bar y, \\mathrm{differences}_j \\rangle\\, \\mathrm{directions}_j`.
    """
    del x, directions, differences
    return value


@_with_estimate.defjvp
def _with_estimate_jvp(primals, tangents):
    value, _, directions, differences = primals
    value_dot, x_dot, _, _ = tangents
    # The tangent projected on each sample's direction: one number per sample.
    along = functools.reduce(
        jnp.add,
        [
            jnp.sum(_wide(d) * _wide(t), axis=tuple(range(1, d.ndim)))
            for d, t in zip(
                jax.tree_util.tree_leaves(directions), jax.tree_util.tree_leaves(x_dot), strict=True
            )
        ],
    )

    def tangent(v, v_dot, diff):
        estimate = jnp.tensordot(along.astype(diff.dtype), diff, axes=1)
        return (v_dot + estimate).astype(v.dtype)

    return value, jax.tree_util.tree_map(tangent, value, value_dot, differences)


# ----------------------------------------------------------------------------------------------
# Checks


def _check_argnums(argnums: Any) -> tuple[int, ...]:
    numbers = (argnums,) if isinstance(argnums, int) and not isinstance(argnums, bool) else argnums
    if (
        not isinstance(numbers, tuple)
        or not numbers
        or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in numbers)
    ):
        raise TypeError(
            "argnums must be a non-negative int or a non-empty tuple of them (the positions of "
            f"the arguments to smooth); got {argnums!r}."
        )
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"argnums must not repeat a position; got {argnums!r}.")
    return numbers


def _check_samples(samples: Any, estimator: str, baseline: str) -> int:
    least = 2 if estimator == "antithetic" or (estimator, baseline) == ("score", "mean") else 1
    samples = check_int("samples", samples, minimum=least)
    if estimator == "antithetic" and samples % 2:
        raise ValueError(
            "samples must be even with estimator='antithetic' (it evaluates the program at "
            f"samples / 2 pairs of opposite perturbations); got {samples}."
        )
    return samples


def _check_key(key: Any) -> jax.Array:
    if key is None:
        raise TypeError(
            "the smoothed function needs a random key: call it with key=jax.random.key(seed) "
            "(split a new one for every call that should draw new perturbations)."
        )
    dtype = getattr(key, "dtype", None)
    shape = getattr(key, "shape", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if shape != ():
            raise ValueError(
                f"key must be a single key (shape ()); got keys of shape {shape}. Use jax.vmap "
                "over the smoothed function to use several."
            )
        return key
    if dtype == jnp.uint32 and shape == (2,):  # a raw key from jax.random.PRNGKey
        return key
    raise TypeError(
        "key must be a JAX random key (jax.random.key(seed), or a raw jax.random.PRNGKey); got "
        f"{key!r}."
    )


def _smoothed_leaves(args: Sequence, argnums: tuple[int, ...]) -> list:
    """The leaves of the smoothed arguments, as arrays, or an error naming a non-float leaf."""
    leaves = []
    for n in argnums:
        for path, leaf in jax.tree_util.tree_leaves_with_path(args[n]):
            dtype = jnp.result_type(leaf)
            if not jnp.issubdtype(dtype, jnp.floating):
                where = f"argument {n}" + jax.tree_util.keystr(path)
                raise TypeError(
                    f"sf.smooth: {where} has dtype {dtype}; only floating-point arguments can be "
                    "perturbed by Gaussian noise. Leave integer arguments out of argnums (they "
                    "are passed to the function unchanged) or cast them to a float dtype."
                )
            leaves.append(jnp.asarray(leaf))
    return leaves


def _output_leaf(leaf, dtype) -> jax.Array:
    leaf = jnp.asarray(leaf)
    if jnp.issubdtype(leaf.dtype, jnp.floating):
        return leaf
    if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
        raise TypeError(
            f"sf.smooth: the function returned a complex array ({leaf.dtype}); smoothing averages "
            "real outputs. Return the real and imaginary parts separately."
        )
    return leaf.astype(dtype)  # a truth value or a count: its mean is a probability or expectation


# ----------------------------------------------------------------------------------------------
# The public function


def smooth(
    fn: Callable,
    *,
    scale: ArrayLike,
    samples: int,
    argnums: int | tuple[int, ...] = 0,
    estimator: Estimator = "antithetic",
    baseline: Baseline | None = None,
    batch_size: int | None = None,
) -> Callable:
    r"""Smooth a program by Gaussian perturbations of its inputs, with an unbiased gradient.

    ``smooth(fn, scale=σ, samples=N)`` returns a function with ``fn``'s arguments plus a keyword
    ``key``. Its value is the Monte Carlo mean of the *exact* program at ``N`` perturbed inputs,
    an unbiased estimate of the smoothed objective

    .. math:: F(x) = \mathbb{E}_{\varepsilon \sim \mathcal{N}(0, I)}\, f(x + \sigma\varepsilon),

    and ``jax.grad`` of it (``jax.jvp``, ``jax.jacfwd``, ``jax.jacrev`` too) gives the chosen
    estimate of :math:`\nabla F(x)`. With ``N`` program evaluations and
    :math:`f_j = f(x + \sigma\varepsilon_j)`:

    * ``"antithetic"`` (default): :math:`M = N/2` pairs of opposite perturbations,
      :math:`\hat g = \frac{1}{M}\sum_{j=1}^{M} \frac{f(x + \sigma\varepsilon_j) -
      f(x - \sigma\varepsilon_j)}{2\sigma}\,\varepsilon_j`;
    * ``"score"``: the score-function (REINFORCE) estimator with a baseline :math:`b`,
      :math:`\hat g = \frac{1}{N}\sum_j (f_j - b_j)\,\varepsilon_j / \sigma`. ``baseline="mean"``
      (default) takes for :math:`b_j` the mean of the *other* samples, so that
      :math:`\hat g = \frac{1}{N-1}\sum_j (f_j - \bar f)\,\varepsilon_j/\sigma`; ``"center"``
      the program at :math:`x` itself (one more evaluation); ``"none"`` no baseline;
    * ``"pathwise"`` (reparameterised): :math:`\hat g = \frac{1}{N}\sum_j \nabla f(x +
      \sigma\varepsilon_j)`, by differentiating the program itself. It needs a program that JAX
      can differentiate, and it is **biased for programs with jumps** (a step function, a
      ``floor``, the exact ``if`` of a decision tree): their derivative is zero almost everywhere
      and misses the mass of the jumps, which is all of :math:`\nabla F` for a step function.

    The antithetic and score estimators are unbiased for any program whose smoothed objective
    exists, because they only *evaluate* ``fn``: integer bit tricks, hashes, table lookups and
    ``while`` loops (which JAX cannot reverse-differentiate) are all fine. Their variance grows
    with the number of smoothed inputs and as :math:`1/\sigma^2`, and falls as :math:`1/N`.
    Both variance reductions cancel a constant in ``fn``, which the plain score function
    (``baseline="none"``) pays for with a variance that grows with :math:`f(x)^2`: a loss far
    from zero is the usual case. Antithetic pairs also cancel the curvature of ``fn`` around
    :math:`x`, but they explore :math:`N/2` directions instead of :math:`N`: for a program that
    is nearly linear over the scale, the mean baseline has about half their variance.

    The samples are evaluated in one vectorised call (``jax.vmap``; ``batch_size`` bounds the
    memory with a ``lax.map`` over batches). Perturbations are drawn from ``key`` (split once per
    smoothed leaf), so the same key gives the same samples: split a new key for every step of an
    optimisation. Arguments not in ``argnums`` and values ``fn`` closes over are not perturbed,
    and their derivatives are those of the program itself (averaged over the samples). ``scale``
    may be a traced array (call ``smooth`` inside a jitted loss to anneal it without
    recompiling); it is a setting, not a parameter: the result is not differentiated with
    respect to it. Outputs keep their floating dtype; boolean and integer outputs are averaged in
    the float dtype of the smoothed arguments (a probability, an expected count).

    Arguments:
        fn: a JAX function of pytrees of arrays, returning a pytree of real arrays.
        scale: :math:`\sigma > 0`, the standard deviation of the perturbations, in the units of
            the smoothed arguments: a scalar, or an array that broadcasts against every smoothed
            leaf (one scale per coordinate).
        samples: :math:`N`, the number of evaluations of ``fn`` per call (even for
            ``"antithetic"``, at least 2 with the ``"mean"`` baseline).
        argnums: the position (or a tuple of positions) of the positional arguments to smooth.
        estimator: the gradient estimator, one of :data:`softflow.ESTIMATORS`.
        baseline: for ``estimator="score"`` only: ``"mean"`` (default), ``"center"`` or
            ``"none"``.
        batch_size: evaluate the samples this many at a time (``None``: all at once).

    Returns:
        The smoothed function ``smoothed(*args, key, **kwargs)``: the mean of ``fn`` over the
        perturbed samples, differentiable with the estimator's gradient.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import softflow as sf
        >>> def step(x):
        ...     return jnp.where(x > 0, 1.0, 0.0)  # gradient zero almost everywhere
        >>> smoothed = sf.smooth(step, scale=0.5, samples=20_000)
        >>> key = jax.random.key(0)
        >>> round(float(smoothed(0.0, key=key)), 2)  # Φ(0 / σ) = 0.5
        0.5
        >>> round(float(jax.grad(smoothed)(0.0, key=key)), 1)  # φ(0 / σ) / σ = 0.80
        0.8
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable; got {fn!r} of type {type(fn).__name__}.")
    check_choice("estimator", estimator, ESTIMATORS)
    if baseline is None:
        baseline = "mean"
    elif estimator != "score":
        raise ValueError(
            f"baseline applies to estimator='score' only; got baseline={baseline!r} with "
            f"estimator={estimator!r} (antithetic pairs need none, pathwise has none)."
        )
    else:
        check_choice("baseline", baseline, BASELINES)
    samples = _check_samples(samples, estimator, baseline)
    numbers = _check_argnums(argnums)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    if is_concrete(scale):  # fail early; a traced scale is checked where it is used
        softness_array(scale, jnp.result_type(float), np.shape(scale), name="scale")

    def smoothed(*args, key=None, **kwargs):
        key = _check_key(key)
        if max(numbers) >= len(args):
            raise ValueError(
                f"argnums {argnums!r} refers to positional argument {max(numbers)}, but the "
                f"smoothed function was called with {len(args)} positional argument(s)."
            )
        leaves = _smoothed_leaves(args, numbers)
        trees = [jax.tree_util.tree_structure(args[n]) for n in numbers]
        scales = [
            softness_array(
                scale, leaf.dtype, leaf.shape, slices="the smoothed argument", name="scale"
            ).astype(leaf.dtype)
            for leaf in leaves
        ]
        draws = samples // 2 if estimator == "antithetic" else samples
        keys = jax.random.split(key, len(leaves))
        noise = [
            jax.random.normal(k, (draws, *leaf.shape), leaf.dtype)
            for k, leaf in zip(keys, leaves, strict=True)
        ]
        if estimator == "antithetic":
            noise = [jnp.concatenate([e, -e]) for e in noise]
        # Only the pathwise estimator differentiates the program with respect to x.
        base = leaves if estimator == "pathwise" else [jax.lax.stop_gradient(v) for v in leaves]
        out_dtype = jnp.result_type(*leaves)

        def run(flat):
            rebuilt, start = list(args), 0
            for n, tree in zip(numbers, trees, strict=True):
                rebuilt[n] = jax.tree_util.tree_unflatten(
                    tree, flat[start : start + tree.num_leaves]
                )
                start += tree.num_leaves
            out = fn(*rebuilt, **kwargs)
            return jax.tree_util.tree_map(lambda y: _output_leaf(y, out_dtype), out)

        def at(eps):
            return run([v + s * e for v, s, e in zip(base, scales, eps, strict=True)])

        if batch_size is None:
            outputs = jax.vmap(at)(noise)
        else:
            outputs = jax.lax.map(at, noise, batch_size=batch_size)
        value = jax.tree_util.tree_map(_mean, outputs)
        if estimator == "pathwise":
            return value
        directions = [
            jax.lax.stop_gradient(e[:draws] / s) for e, s in zip(noise, scales, strict=True)
        ]
        outputs = jax.lax.stop_gradient(outputs)
        if estimator == "antithetic":
            differences = jax.tree_util.tree_map(
                lambda y: (_wide(y[:draws]) - _wide(y[draws:])) / (2 * draws), outputs
            )
        elif baseline == "mean":
            differences = jax.tree_util.tree_map(
                lambda y: (_wide(y) - jnp.mean(_wide(y), axis=0)) / (samples - 1), outputs
            )
        elif baseline == "center":
            center = jax.lax.stop_gradient(run(base))
            differences = jax.tree_util.tree_map(
                lambda y, c: (_wide(y) - _wide(c)) / samples, outputs, center
            )
        else:
            differences = jax.tree_util.tree_map(lambda y: _wide(y) / samples, outputs)
        return _with_estimate(value, leaves, directions, differences)

    smoothed.__name__ = smoothed.__qualname__ = f"smoothed_{getattr(fn, '__name__', 'fn')}"
    smoothed.__doc__ = f"{getattr(fn, '__name__', 'fn')}, smoothed by sf.smooth (call with key=)."
    return smoothed


def _wide(y: jax.Array) -> jax.Array:
    """``y`` in at least float32: sums over many samples in bfloat16 or float16 lose the signal."""
    return y.astype(jnp.promote_types(y.dtype, jnp.float32))


def _mean(y: jax.Array) -> jax.Array:
    return jnp.mean(_wide(y), axis=0).astype(y.dtype)
