"""Summing the probabilities of a relaxed integer's candidates into fewer outcomes (candidates
of equal value, positions clamped into range, the cases of a switch), with the mapping known at
trace time: as slices where the targets of candidates follow each other, else as one product
with a 0/1 matrix."""

import jax
import jax.numpy as jnp
import numpy as np

from .._checks import is_concrete

# The most runs of consecutive targets that fold_onto adds slice by slice; beyond, one product
# with a 0/1 matrix.
_MOST_RUNS = 8


def _runs(targets: np.ndarray, size: int) -> list[tuple[int, int, int]] | None:
    """The candidates as runs ``(start, stride, length)`` whose targets follow each other (a
    strided slice of the candidates lands on consecutive outcomes), few and long: the sum of a
    count and a truth value, joined with the count's outcome varying slowest, is two runs of
    stride 2. None when they are more than ``_MOST_RUNS`` (the search stops there: it runs in
    Python, and the joint outcomes of several relaxed integers are many)."""
    n = targets.size
    free = (targets >= 0) & (targets < size)
    order = np.argsort(targets, kind="stable")
    bounds = np.searchsorted(targets[order], np.arange(size + 1))
    runs = []
    for start in range(n):
        if not free[start]:
            continue
        best = (1, 1)
        target = int(targets[start])
        if target + 1 < size:
            after = order[bounds[target + 1] : bounds[target + 2]]  # the candidates of target + 1
            for stride in (after[after > start] - start)[:4]:
                length = 1
                while (
                    start + stride * length < n
                    and free[start + stride * length]
                    and targets[start + stride * length] == target + length
                ):
                    length += 1
                best = max(best, (length, int(stride)), key=lambda b: b[0])
        length, stride = best
        free[start : start + stride * length : stride] = False
        runs.append((start, stride, length))
        if len(runs) > _MOST_RUNS:
            return None
    return runs


def fold_onto(probs: jax.Array, targets: np.ndarray, size: int) -> jax.Array:
    """The probabilities of the candidates (last axis) summed into ``size`` outcomes, candidate
    ``i`` into outcome ``targets[i]`` (known at trace time, the same at every position; a target
    outside ``0..size-1`` drops its candidate).

    Candidates whose targets follow each other (a distribution shifted by one, as a counter that
    may step; every other candidate of a count plus a truth value) are added as slices: no
    ``candidates x outcomes`` comparison at run time."""
    targets = np.asarray(targets)
    runs = _runs(targets, size)
    if runs is None:
        onto = (targets[:, None] == np.arange(size)).astype(probs.dtype)
        return probs @ onto
    lead = [(0, 0)] * (probs.ndim - 1)
    out = jnp.zeros((*probs.shape[:-1], size), probs.dtype)
    for start, stride, length in runs:
        at = int(targets[start])
        part = probs[..., start : start + stride * (length - 1) + 1 : stride]
        out = out + jnp.pad(part, [*lead, (at, size - at - length)])
    return out


def shared_row(cands: np.ndarray) -> np.ndarray | None:
    """The candidates of every position when they are the same at each, else None."""
    row = cands.reshape(-1, cands.shape[-1])[0] if cands.size else None
    return row if row is not None and np.all(cands == row) else None


def case_weights(index, n: int) -> list[jax.Array]:
    """The probability of each case ``0..n-1`` chosen by a relaxed index (a ``Categorical``)
    clipped to that range (the branches of ``lax.switch``, the cases of ``select_n``): sums of
    slices of its probabilities when its candidates are known at trace time, kept as separate
    arrays (one elementwise pass each, no stacked copy to slice)."""
    probs = jnp.broadcast_to(index.probs, np.shape(index.cands))
    row = shared_row(np.asarray(index.cands)) if is_concrete(index.cands) else None
    if row is None:
        cands = jnp.clip(jnp.asarray(index.cands).astype(jnp.int32), 0, n - 1)
        return [jnp.sum(jnp.where(cands == j, probs, 0), axis=-1) for j in range(n)]
    chosen = np.clip(row.astype(np.int64), 0, n - 1)
    weights = []
    for j in range(n):
        (at,) = np.nonzero(chosen == j)
        if at.size and at[-1] - at[0] + 1 == at.size:
            weights.append(jnp.sum(probs[..., at[0] : at[-1] + 1], axis=-1))
        else:
            weights.append(jnp.sum(jnp.where(chosen == j, probs, 0), axis=-1))
    return weights
