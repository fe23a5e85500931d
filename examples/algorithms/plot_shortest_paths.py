"""
Shortest paths with learned costs
=================================

A traveller crosses an 8 x 8 map, paying the cost of every cell it enters, and always takes the
cheapest route. We see some of its routes but not the costs. Can we recover costs that make the
traveller's choices optimal, also for start and goal pairs we have not seen?

The shortest-path program is Bellman-Ford, written in plain JAX: distances relaxed with a minimum
over the four neighbours, then the path read off by stepping to the neighbour with the smallest
"cost of entering + distance left". The path is a chain of ``argmin`` decisions, so its derivative
with respect to the costs is zero almost everywhere. :func:`softflow.relax` turns each ``argmin``
into a distribution over the four moves, and the path into *expected visit counts*: a smooth
function of the costs that can be compared with the observed routes.
"""

# %%
# The program, in plain JAX
# -------------------------
# ``neighbours`` stacks, for every cell, the values of its four neighbours (``BIG`` off the map).
# Bellman-Ford needs at most ``H * W - 1`` sweeps; ``jnp.minimum`` is continuous, so ``relax``
# leaves the distances exact. The walk moves the mass of the current cell along the chosen move;
# in the exact program that mass is one cell, in the relaxed one it spreads over the candidate
# routes, and ``visits`` sums it over the steps. The program lives in
# ``examples/shortest_paths.py``, which the page "Which gradient to trust" uses too:
#
# .. literalinclude:: /../examples/shortest_paths.py
#    :start-at: H = W = 8
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _gallery import output_dir, quick, save_figure
from jax import lax
from matplotlib.animation import FuncAnimation, PillowWriter
from shortest_paths import BIG, H, W, neighbours, shortest_path
from tqdm import tqdm

import softflow as sf

# %%
# Why a fixed number of sweeps, and not "until nothing changes"? The natural loop,
# ``lax.while_loop(lambda s: jnp.any(s.new < s.old), ...)``, stops on a float comparison, which
# ``relax`` would relax: the soft loop would be a mixture over the sweep at which it stops, and
# every early stop is a half-finished Bellman-Ford with wrong distances. Marking the condition
# with ``sf.exact`` would keep it exact, but JAX cannot reverse-differentiate a ``while_loop``.
# A ``fori_loop`` with Bellman-Ford's bound gives the same distances (the sweeps after
# convergence change nothing), an exact loop count, and a gradient. The only decisions left to
# relax are the moves, as ``explain`` confirms on the hidden cost map: two ridges with one pass
# each and a marsh, plus noise that breaks ties.
key_costs, key_pairs = jax.random.split(jax.random.PRNGKey(3))
terrain = np.ones((H, W))
terrain[:, 3] = 6.0  # a ridge from north to south ...
terrain[6, 3] = 1.0  # ... with one pass
terrain[3, 4:] = 6.0  # a second ridge, east of the first ...
terrain[3, 6] = 1.0  # ... with its own pass
terrain[5:, 5:7] = 3.0  # a marsh
true_costs = jnp.asarray(terrain) + jax.random.uniform(key_costs, (H, W))  # the hidden costs

for op in sf.relax(shortest_path, softness=1.0).explain(true_costs, 0, H * W - 1):
    print(op.primitive, "->", op.rule)


# %%
# The loop "until nothing changes", for the exact program only: it finds the same distances.
def distances_until_stable(costs, goal):
    at_goal = jnp.arange(H * W).reshape(H, W) == goal

    def sweep(state):
        dist, _ = state
        best = jnp.min(neighbours(costs + dist, BIG), axis=-1)
        new = jnp.where(at_goal, 0.0, jnp.minimum(dist, best))
        return new, jnp.any(new < dist)

    return lax.while_loop(lambda state: state[1], sweep, (jnp.where(at_goal, 0.0, BIG), True))[0]


assert jnp.array_equal(distances_until_stable(true_costs, 9), shortest_path(true_costs, 0, 9)[1])

# %%
# Observed routes
# ---------------
# Random start/goal pairs: some for training, the rest held out. The routes are those of the
# exact program under the true costs (``mode="hard"`` is the program itself, bit for bit).
n_train, n_test = (100, 100) if quick() else (200, 300)
ordered = jnp.argwhere(~jnp.eye(H * W, dtype=bool))  # every (start, goal), start != goal
pairs = jax.random.permutation(key_pairs, ordered)  # distinct pairs: none is held out and seen
train, test = pairs[:n_train], pairs[n_train : n_train + n_test]

exact_paths = jax.jit(jax.vmap(sf.relax(shortest_path, mode="hard"), in_axes=(None, 0, 0)))
observed, _ = exact_paths(true_costs, train[:, 0], train[:, 1])


def positive_costs(params):
    """Costs with mean 1, so that the softness is in units of the mean cost."""
    costs = jnp.exp(params)
    return costs / jnp.mean(costs)


def soft_loss(params, softness):
    """Squared error between the expected visits and the observed routes."""
    costs = positive_costs(params)
    relaxed = sf.relax(shortest_path, softness=softness)
    visits, _ = jax.vmap(relaxed, in_axes=(None, 0, 0))(costs, train[:, 0], train[:, 1])
    return jnp.mean(jnp.sum((visits - observed) ** 2, axis=(1, 2)))


# %%
# Learning the costs
# ------------------
# Routes do not change when every cost is multiplied by the same factor, so the learned costs
# are normalised to a mean of 1: the softness is then in units of the mean cost, and the fit
# cannot sharpen its soft routes by inflating every cost. Start from uniform costs and descend
# with Adam while the softness is annealed by an optax schedule, from 1 to a floor of 0.1: large
# at first, so that the expected visits feel routes far from the current ones, small at the end,
# so that they are nearly the hard routes. The softness is a traced argument, so annealing does
# not recompile.
iterations = 100 if quick() else 300
softness_schedule = optax.exponential_decay(
    1.0, transition_steps=iterations, decay_rate=0.1, end_value=0.1
)
optimiser = optax.adam(0.05)
params = jnp.zeros((H, W))
opt_state = optimiser.init(params)
value_and_grad = jax.jit(jax.value_and_grad(soft_loss))

losses, snapshots = [], []
for step in tqdm(range(iterations), desc="learning costs", disable=None):
    loss, grad = value_and_grad(params, softness_schedule(step))
    losses.append(float(loss))
    if step % 4 == 0:
        snapshots.append(np.asarray(positive_costs(params)))
    updates, opt_state = optimiser.update(grad, opt_state)
    params = optax.apply_updates(params, updates)
learned_costs = positive_costs(params)
snapshots.append(np.asarray(learned_costs))


# %%
# Held-out routes
# ---------------
# For each held-out pair, run the exact program under a cost map and price its route with the
# *true* costs (the cost of every cell entered, so not the start). The route is optimal if that
# price is the true shortest distance, within 1e-6 (relative: the two are float32 sums in
# different orders). Baseline: uniform costs, which
# give a shortest route in steps, ignoring the terrain.
def fraction_optimal(costs):
    starts, goals = test[:, 0], test[:, 1]
    visits, _ = exact_paths(costs, starts, goals)
    _, true_dist = exact_paths(true_costs, starts, goals)
    start_cost = true_costs.reshape(-1)[starts]
    price = jnp.sum(visits * true_costs, axis=(1, 2)) - start_cost
    best = true_dist.reshape(len(starts), -1)[jnp.arange(len(starts)), starts]
    reached = visits.reshape(len(starts), -1)[jnp.arange(len(starts)), goals] == 1.0
    optimal = reached & (jnp.abs(price - best) <= 1e-6 * best)
    return float(jnp.mean(optimal))


baseline_fraction = fraction_optimal(jnp.ones((H, W)))
learned_fraction = fraction_optimal(learned_costs)
print(f"held-out pairs: {len(test)}, training routes: {len(train)}")
print(f"optimal routes with uniform costs (baseline): {baseline_fraction:.1%}")
print(f"optimal routes with the learned costs:        {learned_fraction:.1%}")
print(f"loss: {losses[0]:.3f} -> {losses[-1]:.3f}")


# %%
# True and learned costs
# ----------------------
# Each map is shown divided by its mean (the scale is not identifiable). The lines are held-out
# routes (from the dot to the star) under each map. The observed routes only say that the
# ridges are expensive enough to be avoided, so their learned height is a lower bound.
def draw_routes(ax, costs, count=6):
    visits, _ = exact_paths(costs, test[:count, 0], test[:count, 1])
    for visit, (start, goal) in zip(np.asarray(visits), np.asarray(test[:count]), strict=True):
        route, left = [divmod(int(start), W)], set(zip(*np.nonzero(visit), strict=True))
        left.discard(route[0])
        while left:  # follow the route through the cells it visits
            r, c = route[-1]
            route.append(next(cell for cell in left if abs(cell[0] - r) + abs(cell[1] - c) == 1))
            left.discard(route[-1])
        route_rows, route_cols = np.transpose(route)
        ax.plot(route_cols, route_rows, "-", linewidth=2)
        ax.plot(route_cols[0], route_rows[0], "wo", markersize=4)
        ax.plot(goal % W, goal // W, "w*", markersize=8)


fig, axes = plt.subplots(1, 3, figsize=(12, 4))
panels = [
    ("true costs", true_costs),
    ("learned costs", learned_costs),
    ("uniform (baseline)", None),
]
for ax, (name, costs) in zip(axes, panels, strict=True):
    shown = jnp.ones((H, W)) if costs is None else costs / jnp.mean(costs)
    image = ax.imshow(shown, cmap="magma", vmin=0.0, vmax=3.0)
    draw_routes(ax, jnp.ones((H, W)) if costs is None else costs)
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(image, ax=axes, shrink=0.8, label="cost / mean cost")
save_figure(fig, "shortest_paths_costs")

fig_loss, ax_loss = plt.subplots(figsize=(5, 3.2))
ax_loss.plot(losses)
ax_loss.set_yscale("log")
ax_loss.set_xlabel("iteration")
ax_loss.set_ylabel("squared error of expected visits")
fig_loss.tight_layout()
save_figure(fig_loss, "shortest_paths_loss")

# %%
# The learned cost map during the descent (saved as a GIF).
fig_anim, ax_anim = plt.subplots(figsize=(4, 4))
frame_image = ax_anim.imshow(snapshots[0] / snapshots[0].mean(), cmap="magma", vmin=0.0, vmax=3.0)
ax_anim.set_xticks([])
ax_anim.set_yticks([])
title = ax_anim.set_title("")


def draw(frame):
    frame_image.set_data(snapshots[frame] / snapshots[frame].mean())
    title.set_text(f"iteration {min(4 * frame, iterations)}")
    return [frame_image, title]


animation = FuncAnimation(fig_anim, draw, frames=len(snapshots), blit=False)
animation.save(output_dir() / "shortest_paths.gif", writer=PillowWriter(fps=10))
plt.show()
