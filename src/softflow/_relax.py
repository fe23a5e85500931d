"""The Relaxation module: softness, kind and mode carried through user code as one object."""

import equinox as eqx
import jax
import jax.numpy as jnp

from . import _compare
from ._checks import check_choice, check_softness
from ._compare import MODES
from ._kinds import KINDS


class Relaxation(eqx.Module):
    r"""Softness, kind and mode of the relaxed comparisons, bundled as an :class:`equinox.Module`.

    ``softness`` is an array leaf: it is traced under :func:`equinox.filter_jit` (changing it does
    not recompile), can be annealed with :func:`equinox.tree_at`, and can be learned by taking
    gradients with respect to the module. ``kind`` and ``mode`` are static fields. The methods are
    the comparisons of softflow with these settings filled in.

    Arguments:
        softness: :math:`\tau > 0`, float or array (converted to a JAX array).
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

    softness: jax.Array
    kind: str = eqx.field(static=True, default="logistic")
    mode: str = eqx.field(static=True, default="soft")

    def __init__(self, softness=1.0, kind: str = "logistic", mode: str = "soft"):
        check_softness(softness)
        self.softness = jnp.asarray(softness)
        self.kind = check_choice("kind", kind, KINDS)
        self.mode = check_choice("mode", mode, MODES)

    def _options(self):
        return {"softness": self.softness, "kind": self.kind, "mode": self.mode}

    def greater(self, x, y):
        """:func:`softflow.greater` with this relaxation's settings."""
        return _compare.greater(x, y, **self._options())

    def greater_equal(self, x, y):
        """:func:`softflow.greater_equal` with this relaxation's settings."""
        return _compare.greater_equal(x, y, **self._options())

    def less(self, x, y):
        """:func:`softflow.less` with this relaxation's settings."""
        return _compare.less(x, y, **self._options())

    def less_equal(self, x, y):
        """:func:`softflow.less_equal` with this relaxation's settings."""
        return _compare.less_equal(x, y, **self._options())

    def equal(self, x, y):
        """:func:`softflow.equal` with this relaxation's settings."""
        return _compare.equal(x, y, **self._options())

    def not_equal(self, x, y):
        """:func:`softflow.not_equal` with this relaxation's settings."""
        return _compare.not_equal(x, y, **self._options())

    def between(self, x, lo, hi):
        """:func:`softflow.between` with this relaxation's settings."""
        return _compare.between(x, lo, hi, **self._options())

    def with_softness(self, softness) -> "Relaxation":
        """A copy with another softness (for annealing), same kind and mode."""
        return Relaxation(softness, kind=self.kind, mode=self.mode)

    def hard(self) -> "Relaxation":
        """A copy in ``"hard"`` mode: the exact program, for checking a solution."""
        return Relaxation(self.softness, kind=self.kind, mode="hard")
