"""The Relaxation module: softness, kind and mode carried through user code as one object."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from . import _compare, _program, _select, _sort, _steps
from ._checks import as_real_array, check_choice, float_dtype, softness_array
from ._kinds import KINDS, Kind
from ._modes import MODES, Mode

if TYPE_CHECKING:
    from ._program import Relaxed


class Relaxation(eqx.Module):
    r"""Softness, kind and mode of the relaxed comparisons, bundled as an :class:`equinox.Module`.

    The softness is stored as its logarithm, :math:`\tau = e^{\ell}`, in a floating array leaf
    ``log_softness``: it is traced under :func:`equinox.filter_jit` (changing it does not
    recompile), and it can be learned: a gradient step on :math:`\ell` can never make the softness
    zero or negative. ``kind`` and ``mode`` are static fields. The methods are the comparisons of
    softflow with these settings filled in.

    Arguments:
        softness: :math:`\tau > 0`, a float or float array (an integer is converted to the
            default float dtype; a float array keeps its dtype).
        kind: one of :data:`softflow.KINDS`.
        mode: one of :data:`softflow.MODES`.

    Example:
        >>> import softflow as sf
        >>> relax = sf.Relaxation(0.5, kind="gaussian")
        >>> round(float(relax.greater(1.0, 0.0)), 4)
        0.895
        >>> float(relax.hard().greater(1.0, 0.0))
        1.0
    """

    log_softness: jax.Array
    kind: Kind = eqx.field(static=True)
    mode: Mode = eqx.field(static=True)

    def __init__(self, softness: ArrayLike = 1.0, kind: Kind = "logistic", mode: Mode = "soft"):
        given = as_real_array("softness", softness, allow_bool=False)
        dtype = float_dtype(given.dtype)
        self.log_softness = jnp.log(softness_array(given, dtype, given.shape))
        self.kind = kind
        self.mode = mode

    def __check_init__(self):
        check_choice("kind", self.kind, KINDS)
        check_choice("mode", self.mode, MODES)

    @property
    def softness(self) -> jax.Array:
        """The softness :math:`\tau = e^{\\ell}` (always positive)."""
        return jnp.exp(self.log_softness)

    def _options(self) -> dict[str, Any]:
        return {"softness": self.softness, "kind": self.kind, "mode": self.mode}

    def greater(self, x: ArrayLike, y: ArrayLike) -> jax.Array:
        """:func:`softflow.greater` with this relaxation's settings."""
        return _compare.greater(x, y, **self._options())

    def greater_equal(self, x: ArrayLike, y: ArrayLike) -> jax.Array:
        """:func:`softflow.greater_equal` with this relaxation's settings."""
        return _compare.greater_equal(x, y, **self._options())

    def less(self, x: ArrayLike, y: ArrayLike) -> jax.Array:
        """:func:`softflow.less` with this relaxation's settings."""
        return _compare.less(x, y, **self._options())

    def less_equal(self, x: ArrayLike, y: ArrayLike) -> jax.Array:
        """:func:`softflow.less_equal` with this relaxation's settings."""
        return _compare.less_equal(x, y, **self._options())

    def equal(self, x: ArrayLike, y: ArrayLike) -> jax.Array:
        """:func:`softflow.equal` with this relaxation's settings."""
        return _compare.equal(x, y, **self._options())

    def not_equal(self, x: ArrayLike, y: ArrayLike) -> jax.Array:
        """:func:`softflow.not_equal` with this relaxation's settings."""
        return _compare.not_equal(x, y, **self._options())

    def between(self, x: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> jax.Array:
        """:func:`softflow.between` with this relaxation's settings."""
        return _compare.between(x, lo, hi, **self._options())

    def with_softness(self, softness: ArrayLike) -> "Relaxation":
        """A copy with another softness (for annealing), same kind and mode."""
        return Relaxation(softness, kind=self.kind, mode=self.mode)

    def hard(self) -> "Relaxation":
        """A copy in ``"hard"`` mode: the exact program, for checking a solution."""
        return Relaxation(self.softness, kind=self.kind, mode="hard")

    def argmax(self, x, axis=-1):
        """:func:`softflow.argmax` with this relaxation's settings."""
        return _select.argmax(x, axis, **self._options())

    def argmin(self, x, axis=-1):
        """:func:`softflow.argmin` with this relaxation's settings."""
        return _select.argmin(x, axis, **self._options())

    def max(self, x, axis=-1):
        """:func:`softflow.max` with this relaxation's settings."""
        return _select.max(x, axis, **self._options())

    def min(self, x, axis=-1):
        """:func:`softflow.min` with this relaxation's settings."""
        return _select.min(x, axis, **self._options())

    def sort(self, x, axis=-1, **options):
        """:func:`softflow.sort` with this relaxation's settings (``method`` etc. as keywords)."""
        return _sort.sort(x, axis, **options, **self._options())

    def argsort(self, x, axis=-1, **options):
        """:func:`softflow.argsort` with this relaxation's settings."""
        return _sort.argsort(x, axis, **options, **self._options())

    def rank(self, x, axis=-1, **options):
        """:func:`softflow.rank` with this relaxation's settings."""
        return _sort.rank(x, axis, **options, **self._options())

    def top_k(self, x, k, axis=-1, **options):
        """:func:`softflow.top_k` with this relaxation's settings."""
        return _sort.top_k(x, k, axis, **options, **self._options())

    def quantile(self, x, q, axis=-1, **options):
        """:func:`softflow.quantile` with this relaxation's settings."""
        return _sort.quantile(x, q, axis, **options, **self._options())

    def median(self, x, axis=-1, **options):
        """:func:`softflow.median` with this relaxation's settings."""
        return _sort.median(x, axis, **options, **self._options())

    def sign(self, x):
        """:func:`softflow.sign` with this relaxation's settings."""
        return _steps.sign(x, **self._options())

    def round(self, x):
        """:func:`softflow.round` with this relaxation's settings."""
        return _steps.round(x, **self._options())

    def floor(self, x):
        """:func:`softflow.floor` with this relaxation's settings."""
        return _steps.floor(x, **self._options())

    def ceil(self, x):
        """:func:`softflow.ceil` with this relaxation's settings."""
        return _steps.ceil(x, **self._options())

    def relax(self, fn: Callable, **options: Any) -> "Relaxed":
        """:func:`softflow.relax` with this relaxation's softness, kind and mode.

        ``options`` are the other keywords of :func:`softflow.relax` (``tnorm``, ``max_steps``).
        """
        return _program.relax(fn, **self._options(), **options)
