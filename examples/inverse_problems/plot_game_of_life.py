"""
Reversing the Game of Life
==========================

Conway's Game of Life is pure control flow: a cell is born with exactly three live neighbours and
survives with two or three. Run forwards it is a few comparisons; run backwards (which board
*evolves into* this one?) it has no formula, and the exact program has no useful gradient: its
comparisons are flat everywhere except at their jumps. Written with softflow's soft conditions, the
same step becomes a smooth map between boards of probabilities, and gradient descent can search for
a predecessor. This page writes the exact and the relaxed rule, reverses one board by an annealed
descent with optax, hardens the answer and checks it with the exact rule, then reverses several
steps at once on boards of Kaggle's "Conway's Reverse Game of Life 2020".
"""

# %%
# The rule, exact and relaxed
# ---------------------------
# The board is a torus (``jnp.roll`` wraps the edges). ``step`` is the exact rule on 0/1 cells.
# ``soft_step`` is the same program with its conditions relaxed: :func:`softflow.between` asks
# softly whether the neighbour count lies in the survival or the birth range, and
# :func:`softflow.soft_if` on the cell's own state (the probability that it is alive) blends the
# two branches. On a board of probabilities the count is the expected number of live neighbours.

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _gallery import output_dir, quick, save_figure
from matplotlib.animation import FuncAnimation, PillowWriter
from tqdm.auto import tqdm

import softflow as sf

QUICK = quick()
MAX_DELTA = 5  # the competition asks for up to five steps back


def neighbour_count(board):
    """Number of live neighbours of every cell; the last two axes are the board."""
    column = board + jnp.roll(board, 1, axis=-2) + jnp.roll(board, -1, axis=-2)
    block = column + jnp.roll(column, 1, axis=-1) + jnp.roll(column, -1, axis=-1)
    return block - board


def step(board):
    """One exact step of the Game of Life on 0/1 cells."""
    count = neighbour_count(board)
    alive_next = jnp.where(board == 1, (count == 2) | (count == 3), count == 3)
    return alive_next.astype(board.dtype)


def soft_step(board, softness):
    """One relaxed step on a board of probabilities; the exact step as softness -> 0."""
    return sf.soft_if(
        board,
        lambda count: sf.between(count, 1.5, 3.5, softness=softness),  # survives
        lambda count: sf.between(count, 2.5, 3.5, softness=softness),  # is born
        neighbour_count(board),
    )


@jax.jit
def evolve(board, delta):
    """``delta`` exact steps of every board (``delta`` has the batch shape of the boards)."""

    def one(board, t):
        return jnp.where((t < delta)[..., None, None], step(board), board), None

    return jax.lax.scan(one, board, jnp.arange(MAX_DELTA))[0]


def kaggle_boards(count, seed):
    """Boards drawn as in the competition: a random density, five warm-up steps, then the
    target ``delta`` (1 to 5) steps later; boards whose target is empty are left out."""
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.01, 0.99, (count, 1, 1))
    boards = jnp.asarray(rng.random((count, 25, 25)) < density, jnp.int32)
    starts = evolve(boards, jnp.full(count, MAX_DELTA))
    deltas = jnp.asarray(rng.integers(1, MAX_DELTA + 1, count))
    stops = evolve(starts, deltas)
    keep = np.asarray(stops.any(axis=(1, 2)))
    return starts[keep], stops[keep], deltas[keep]


starts, stops, deltas = kaggle_boards(64, seed=4)
exact = step(stops)
relaxed = soft_step(stops.astype(jnp.float32), 0.01)
print("soft step at softness 0.01 == exact step:", bool(jnp.allclose(relaxed, exact, atol=1e-6)))

# %%
# One step back
# -------------
# The unknown predecessor is a grid of logits; its cells are alive with probability
# ``sigmoid(logits)``. The loss is the cross-entropy between its soft step and the target.
# The softness comes from an optax schedule: it decays from 0.6 and is floored at 0.05
# (``end_value``), so the relaxed rule starts smooth and ends close to the exact one. Eight
# restarts from random logits run side by side; the batch of boards is just a leading axis.

RESTARTS = 8
ITERATIONS = 150 if QUICK else 400
softness_schedule = optax.exponential_decay(
    0.6, transition_steps=ITERATIONS // 2, decay_rate=0.1, end_value=0.05
)
optimiser = optax.adam(0.2)


def one_step_loss(logits, target, softness):
    predicted = jnp.clip(soft_step(jax.nn.sigmoid(logits), softness), 1e-6, 1 - 1e-6)
    cross_entropy = -(target * jnp.log(predicted) + (1 - target) * jnp.log1p(-predicted))
    return cross_entropy.mean(axis=(-2, -1)).sum()


@jax.jit
def one_step_update(logits, opt_state, target, iteration):
    loss, grads = jax.value_and_grad(one_step_loss)(logits, target, softness_schedule(iteration))
    updates, opt_state = optimiser.update(grads, opt_state)
    return optax.apply_updates(logits, updates), opt_state, loss


target = stops[0].astype(jnp.float32)
logits = jax.random.normal(jax.random.key(0), (RESTARTS, *target.shape))
opt_state = optimiser.init(logits)
losses, snapshots = [], []
for iteration in tqdm(range(ITERATIONS), desc="one step back", disable=None):
    logits, opt_state, loss = one_step_update(logits, opt_state, target, iteration)
    losses.append(float(loss) / RESTARTS)
    if iteration % 5 == 0:
        snapshots.append(jax.nn.sigmoid(logits))

# %%
# Harden and check
# ----------------
# Each restart is hardened (a cell is alive where its logit is positive) and checked with the
# exact ``step``; the restart with the fewest wrong cells is the answer.

candidates = (logits > 0).astype(jnp.int32)
wrong_cells = (step(candidates) != stops[0]).sum(axis=(-2, -1))
best = int(jnp.argmin(wrong_cells))
found = candidates[best]
forward = step(found)
wrong = np.asarray(forward != stops[0])
print(f"wrong cells per restart: {wrong_cells.tolist()}")
print(f"best restart: {int(wrong.sum())} of {wrong.size} cells wrong after one exact step")

fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
for ax, board, title in zip(
    axes, (stops[0], found, forward), ("target", "found predecessor", "its next step"), strict=True
):
    ax.imshow(board, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
rows, columns = np.nonzero(wrong)
axes[2].scatter(columns, rows, s=60, facecolors="none", edgecolors="red", label="mismatch")
if wrong.any():
    axes[2].legend(loc="lower right", fontsize=8)
fig.tight_layout()
save_figure(fig, "life_predecessor")

# %%
# The loss falls as the cells commit to 0 or 1 while the softness falls to its floor.

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(losses, color="C0")
ax.set_xlabel("iteration")
ax.set_ylabel("cross-entropy", color="C0")
ax.set_yscale("log")
twin = ax.twinx()
twin.plot([float(softness_schedule(i)) for i in range(ITERATIONS)], color="C1")
twin.set_ylabel("softness", color="C1")
fig.tight_layout()
save_figure(fig, "life_loss_softness")

# %%
# The predecessor hardening: the probabilities of the chosen restart every five iterations.
# Grey cells are undecided; as the softness falls they settle to black or white.

fig, ax = plt.subplots(figsize=(3.6, 3.6))
image = ax.imshow(snapshots[0][best], cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
ax.set_xticks([])
ax.set_yticks([])


def show(frame):
    image.set_data(snapshots[frame][best])
    ax.set_title(f"iteration {5 * frame}")
    return (image,)


animation = FuncAnimation(fig, show, frames=len(snapshots), blit=False)
animation.save(output_dir() / "life_hardening.gif", writer=PillowWriter(fps=8))

# %%
# Several steps back at once
# --------------------------
# For ``delta`` steps back, chaining the soft step loses the signal after two steps: an
# expected neighbour count of 2.5 does not say whether the count is likely 2 or 3 (the cell
# lives) or 0 or 5 (it dies). A better relaxation treats the cells as independent coins and
# computes, exactly, the probability that each cell is alive one step later: with :math:`N` its
# number of live neighbours and :math:`p` the probability that it is alive now,
#
# .. math:: P(\text{alive next}) = p \, P(N \in \{2, 3\}) + (1 - p) \, P(N = 3)
#     = P(N = 3) + p \, P(N = 2).
#
# The law of :math:`N`, a sum of eight independent coins, is what
# :func:`softflow.count_distribution` computes; :func:`softflow.count_expectation` takes the
# expectation of a function of the count, here :math:`f = [0, 0, p, 1]` for the counts 0 to 3
# (and 0 above), without ever stacking the law into one array. The eight neighbours are a list
# of shifted boards, counted cell by cell. ``alive_probability`` is the exact step on 0/1 boards.


def neighbours(board):
    """The eight neighbours of every cell, as a list of shifted boards."""
    return [
        jnp.roll(board, (dr, dc), axis=(-2, -1))
        for dr in (-1, 0, 1)
        for dc in (-1, 0, 1)
        if dr or dc
    ]


def alive_probability(board):
    """Probability that each cell is alive after one step, the cells independent coins."""
    return sf.count_expectation(neighbours(board), [0.0, 0.0, board, 1.0])


binary = (jax.random.uniform(jax.random.key(1), (16, 25, 25)) < 0.4).astype(jnp.float32)
assert jnp.array_equal(alive_probability(binary), step(binary)), "not the exact rule on 0/1"

# %%
# The same step from the plain program
# ------------------------------------
# ``step`` above is plain JAX: ``count == 3`` and ``count == 2`` on a sum of rolled 0/1 boards,
# and ``jnp.where`` on the cell's own state. :func:`softflow.relax` reads a sum of truth values
# as a count with its exact law (it keeps the joint outcomes of the terms, so that subtracting
# the cell itself from the 3 x 3 block is exact too), and a comparison of the count with an
# integer as a probability under that law. Relaxed, the plain step on a board whose live cells
# are the positive logits is ``alive_probability`` of the board of probabilities, with no soft
# code written by hand. ``explain`` lists what it relaxed.


def step_from_logits(logits):
    return step((logits > 0).astype(jnp.int32))


logits_board = jax.random.normal(jax.random.key(6), (25, 25))
relaxed_step = sf.relax(step_from_logits, softness=0.5)
by_hand = alive_probability(jax.nn.sigmoid(logits_board / 0.5))
difference = float(jnp.max(jnp.abs(relaxed_step(logits_board) - by_hand)))
print(f"relax(step) against alive_probability: largest difference {difference:.1e}")
assert difference < 1e-5
for op in relaxed_step.explain(logits_board):
    print(f"{op.primitive:>6s} -> {op.rule}")

# %%
# How much the law matters shows on a dead cell whose eight neighbours are each alive with
# probability :math:`q`. It is born with probability :math:`P(N = 3)`, which the count law gives
# exactly (the dots are frequencies over 20,000 random boards). The relaxation of the expected
# count, ``between(8q, 2.5, 3.5)``, says "born" whenever :math:`8q` is near 3, where the true
# chance is never above 0.28.

q = jnp.linspace(0.0, 1.0, 101)
coins = jnp.broadcast_to(q[:, None, None], (len(q), 3, 3)).at[:, 1, 1].set(0.0)
born_exact = alive_probability(coins)[:, 1, 1]
born_expected = sf.between(8 * q, 2.5, 3.5, softness=0.1)
samples = jax.random.uniform(jax.random.key(5), (20_000, len(q), 8)) < q[None, :, None]
born_sampled = (samples.sum(axis=-1) == 3).mean(axis=0)

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(q, born_expected, label="soft compare of the expected count", color="C1")
ax.plot(q, born_exact, label="count law: P(N = 3)", color="C0")
ax.plot(q[::5], born_sampled[::5], "o", color="C0", markersize=3, label="sampled boards")
ax.set_xlabel("probability q of each neighbour being alive")
ax.set_ylabel("P(dead cell is born)")
ax.legend()
fig.tight_layout()
save_figure(fig, "life_count_law")

# %%
# The multi-step descent
# ----------------------
# The start board is ``sf.greater(logits + noise, 0)`` at a softness from an optax schedule;
# the Gaussian noise on the logits, annealed to zero, shakes the descent out of poor boards early
# on. The whole program, ``delta`` probabilistic steps of it, runs under :func:`jax.lax.scan`
# (a Python loop over the steps makes XLA fuse and recompute across steps) and is differentiated
# end to end: the loss is the squared difference between the evolved board and the target.

MULTI_ITERATIONS = 100 if QUICK else 300
cell_softness = optax.exponential_decay(
    1.0, transition_steps=MULTI_ITERATIONS, decay_rate=0.1, end_value=0.1
)
noise_scale = optax.linear_schedule(1.0, 0.0, MULTI_ITERATIONS)
multi_optimiser = optax.adam(0.2)


def start_board(logits, key, iteration):
    noise = noise_scale(iteration) * jax.random.normal(key, logits.shape)
    return sf.greater(logits + noise, 0.0, softness=cell_softness(iteration))


def evolve_probabilities(board, delta):
    def one(board, t):
        return jnp.where((t < delta)[..., None, None], alive_probability(board), board), None

    return jax.lax.scan(one, board, jnp.arange(MAX_DELTA))[0]


def multi_step_loss(logits, key, target, delta, iteration):
    evolved = evolve_probabilities(start_board(logits, key, iteration), delta)
    return ((evolved - target) ** 2).mean(axis=(-2, -1)).sum()


@jax.jit
def multi_step_update(logits, opt_state, key, target, delta, iteration):
    key = jax.random.fold_in(key, iteration)
    grads = jax.grad(multi_step_loss)(logits, key, target, delta, iteration)
    updates, opt_state = multi_optimiser.update(grads, opt_state)
    return optax.apply_updates(logits, updates), opt_state


# %%
# Score on the Kaggle protocol
# ----------------------------
# Boards drawn as in the competition, ``delta`` from 1 to 5, two restarts each (an array of
# boards x restarts x 25 x 25). The score is the fraction of wrong cells after ``delta`` exact
# steps of the hardened answer (the best restart), against the all-dead board, which an entry
# has to beat.

count = 32 if QUICK else 200
_, stops, deltas = kaggle_boards(count, seed=1)
targets = stops[:, None].astype(jnp.float32)
restarts = 2
delta_per_restart = jnp.broadcast_to(deltas[:, None], (len(stops), restarts))
logits = -1.0 + jax.random.normal(jax.random.key(2), (len(stops), restarts, 25, 25))
opt_state = multi_optimiser.init(logits)
# For the animation: the busiest target among the boards two or more steps back.
live = np.where(np.asarray(deltas) >= 2, np.asarray(stops).sum(axis=(1, 2)), -1)
shown = int(np.argmax(live))
shown_delta = int(deltas[shown])


@jax.jit
def show_board(logits, iteration):
    """The start board at the current softness (without the noise) and its evolution."""
    board = sf.greater(logits, 0.0, softness=cell_softness(iteration))
    return board, evolve_probabilities(board, shown_delta)


frames = []
for iteration in tqdm(range(MULTI_ITERATIONS), desc="several steps back", disable=None):
    logits, opt_state = multi_step_update(
        logits, opt_state, jax.random.key(3), targets, delta_per_restart, iteration
    )
    if iteration % 5 == 0:
        frames.append(show_board(logits[shown, 0], iteration))

candidates = (logits > 0).astype(jnp.int32)
errors = (evolve(candidates, delta_per_restart) != stops[:, None]).mean(axis=(-2, -1))
descent = np.asarray(errors.min(axis=1))  # the best restart of each board
all_dead = np.asarray(evolve(jnp.zeros_like(stops), deltas) != stops).mean(axis=(-2, -1))
deltas = np.asarray(deltas)
print(f"{'':8s} {'descent':>8s} {'all dead':>8s} {'boards':>6s}")
for delta in range(1, MAX_DELTA + 1):
    chosen = deltas == delta
    print(
        f"delta={delta:<2d} {descent[chosen].mean():8.4f} {all_dead[chosen].mean():8.4f} "
        f"{chosen.sum():6d}"
    )
print(f"overall  {descent.mean():8.4f} {all_dead.mean():8.4f} {len(deltas):6d}")

# %%
# The descent gains most one or two steps back. On the couple of dozen boards of quick mode the
# scores per ``delta`` are noisy; the full run (200 boards drawn, 148 of them not empty, two
# restarts, 300 iterations) beats the all-dead board at every ``delta``, with 0.088 wrong cells
# overall against 0.150 (0.034 against 0.186 one step back, 0.128 against 0.141 five steps back).

positions = np.arange(1, MAX_DELTA + 1)
fig, ax = plt.subplots(figsize=(7, 3.6))
for offset, (errors_per_board, label) in zip(
    (-0.2, 0.2), ((all_dead, "all-dead board"), (descent, "descent")), strict=True
):
    means = [errors_per_board[deltas == d].mean() for d in positions]
    ax.bar(positions + offset, means, 0.4, label=label)
ax.set_xticks(positions, [f"delta={d}" for d in positions])
ax.set_ylabel("fraction of wrong cells")
ax.set_title(f"{len(deltas)} boards, {MULTI_ITERATIONS} iterations")
ax.legend()
fig.tight_layout()
save_figure(fig, "life_scores")

# %%
# The descent of the busiest board two or more steps back (restart 0): left, its start board at
# the current softness (without the noise); middle, what the probabilistic steps make of it;
# right, the target. As the softness falls the start board commits to 0 or 1 and the evolved
# board sharpens towards the target; the grey that stays marks cells the descent leaves
# uncertain, and the cells it gets wrong are what the local search of the benchmark works on.

fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
titles = ("start board", f"after {shown_delta} steps", "target")
images = [
    ax.imshow(board, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    for ax, board in zip(axes, (*frames[0], stops[shown]), strict=True)
]
for ax, title in zip(axes, titles, strict=True):
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def show_descent(frame):
    images[0].set_data(frames[frame][0])
    images[1].set_data(frames[frame][1])
    fig.suptitle(f"iteration {5 * frame}")
    return images


animation = FuncAnimation(fig, show_descent, frames=len(frames), blit=False)
animation.save(output_dir() / "life_multistep.gif", writer=PillowWriter(fps=8))

# %%
# Scaling up
# ----------
# The Kaggle-protocol benchmark, ``benchmarks/life_reverse.py``, runs this multi-step descent on
# thousands of boards within a time budget, split over every available device with
# :mod:`jax.sharding`: restarts side by side, rounds that start again from fresh logits, the best
# hardened board of each kept. It then refines each answer by a hard local search, flips of
# single cells and of neighbouring pairs scored by a bit-packed exact step, which fixes cells
# that a descent leaves wrong; its scores, with and without the search, are on the
# :doc:`benchmarks page </benchmarks>`.
