"""The shortest-path program of the gallery: Bellman-Ford on a grid, and the route it takes.

Shared by the pages ``algorithms/plot_shortest_paths.py`` (costs learned from routes with
:func:`softflow.relax`) and ``algorithms/plot_which_gradient.py`` (the gradient estimators
compared on it). Plain JAX: the exact program as it is.
"""

import jax
import jax.numpy as jnp
from jax import lax

H = W = 8
BIG = 1e4  # "unreachable": finite, so that blended branches never see inf * 0
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right


def neighbours(field, fill):
    """For every cell, the values of ``field`` at its four neighbours (``fill`` off the map)."""
    padded = jnp.pad(field, 1, constant_values=fill)
    return jnp.stack([padded[1 + di : 1 + di + H, 1 + dj : 1 + dj + W] for di, dj in MOVES], -1)


def shortest_path(costs, start, goal):
    """Visits of each cell on the cheapest route from ``start`` to ``goal``, and the distances."""
    cells = jnp.arange(H * W).reshape(H, W)
    at_goal = cells == goal

    def sweep(_, dist):
        best = jnp.min(neighbours(costs + dist, BIG), axis=-1)
        return jnp.where(at_goal, 0.0, jnp.minimum(dist, best))

    dist = lax.fori_loop(0, H * W - 1, sweep, jnp.where(at_goal, 0.0, BIG))
    move = jnp.argmin(neighbours(costs + dist, BIG), axis=-1)  # the decision at every cell
    take_move = jax.nn.one_hot(move, len(MOVES))

    def walk(_, state):
        here, visits = state
        leaving = jnp.where(at_goal, 0.0, here)  # the goal keeps what reaches it
        arriving = sum(
            jnp.pad(leaving * take_move[..., m], 1)[1 - di : 1 - di + H, 1 - dj : 1 - dj + W]
            for m, (di, dj) in enumerate(MOVES)
        )
        here = arriving + jnp.where(at_goal, here, 0.0)
        return here, visits + arriving  # the goal's own mass is not counted again

    here = (cells == start).astype(costs.dtype)
    _, visits = lax.fori_loop(0, H * W, walk, (here, here))
    return visits, dist
