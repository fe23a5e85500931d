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
# .. math:: P(\text{alive next}) = p \, P(N \in \{2, 3\}) + (1 - p) \, P(N = 3),
#
# a :func:`softflow.soft_if` on the cell's state whose branches are the probabilities of the two
# conditions. Those come from the distribution of :math:`N`, built coin by coin (only the
# probabilities of 0 to 3 live neighbours are needed). ``alive_probability`` is the exact step
# on 0/1 boards. The cells are ``sf.greater(logits + noise, 0)`` at a softness from an optax
# schedule: the noise, annealed to zero, shakes the descent out of poor boards early on. The
# whole program, ``delta`` steps of it, runs under :func:`jax.lax.scan` and is differentiated
# end to end.


def add_coin(counts, p):
    """Distribution of a count plus one more coin that is 1 with probability ``p``."""
    counts = [*counts, 0.0]
    return [counts[0] * (1 - p)] + [
        counts[k] * (1 - p) + counts[k - 1] * p for k in range(1, len(counts))
    ]


def add_counts(a, b, largest):
    """Distribution of the sum of two independent counts, for sums 0 to ``largest``."""
    return [
        sum(a[i] * b[k - i] for i in range(k + 1) if i < len(a) and k - i < len(b))
        for k in range(largest + 1)
    ]


def alive_probability(board):
    """Probability that each cell is alive after one step, the cells independent coins."""
    up, down = jnp.roll(board, 1, axis=-2), jnp.roll(board, -1, axis=-2)
    above_below = add_coin(add_coin([1.0], up), down)  # live cells among the two, 0 to 2
    column = add_coin(above_below, board)  # the column of three centred on the cell, 0 to 3
    left = [jnp.roll(c, 1, axis=-1) for c in column]
    right = [jnp.roll(c, -1, axis=-1) for c in column]
    n = add_counts(add_counts(left, right, 3), above_below, 3)  # P(N = 0), ..., P(N = 3)
    return sf.soft_if(board, lambda: n[2] + n[3], lambda: n[3])


binary = (jax.random.uniform(jax.random.key(1), (16, 25, 25)) < 0.4).astype(jnp.float32)
assert jnp.array_equal(alive_probability(binary), step(binary)), "not the exact rule on 0/1"

MULTI_ITERATIONS = 100 if QUICK else 300
cell_softness = optax.exponential_decay(
    1.0, transition_steps=MULTI_ITERATIONS, decay_rate=0.1, end_value=0.1
)
noise_scale = optax.linear_schedule(1.0, 0.0, MULTI_ITERATIONS)
multi_optimiser = optax.adam(0.1)


def multi_step_loss(logits, key, target, delta, iteration):
    noise = noise_scale(iteration) * jax.random.normal(key, logits.shape)
    board = sf.greater(logits + noise, 0.0, softness=cell_softness(iteration))

    def one(board, t):
        return jnp.where((t < delta)[..., None, None], alive_probability(board), board), None

    evolved = jax.lax.scan(one, board, jnp.arange(MAX_DELTA))[0]
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
# Boards drawn as in the competition, ``delta`` from 1 to 5, several restarts each (an array of
# boards x restarts x 25 x 25; quick mode runs four restarts instead of eight). The score is the
# fraction of wrong cells after ``delta`` exact steps of the hardened answer (the best restart),
# against the all-dead board, which an entry has to beat.

count = 32 if QUICK else 200
_, stops, deltas = kaggle_boards(count, seed=1)
targets = stops[:, None].astype(jnp.float32)
restarts = 4 if QUICK else RESTARTS
delta_per_restart = jnp.broadcast_to(deltas[:, None], (len(stops), restarts))
logits = -1.0 + jax.random.normal(jax.random.key(2), (len(stops), restarts, 25, 25))
opt_state = multi_optimiser.init(logits)
for iteration in tqdm(range(MULTI_ITERATIONS), desc="several steps back", disable=None):
    logits, opt_state = multi_step_update(
        logits, opt_state, jax.random.key(3), targets, delta_per_restart, iteration
    )

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
# scores per ``delta`` are noisy; the full run (200 boards drawn, 148 of them not empty, eight
# restarts, 300 iterations) beats the all-dead board at every ``delta``, with 0.082 wrong cells
# overall against 0.150.

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
# Scaling up
# ----------
# The Kaggle-protocol benchmark, ``benchmarks/life_reverse.py``, reverses thousands of boards
# within a time budget, split over every available device with :mod:`jax.sharding` (its descent
# goes back one step at a time with ``soft_step``). It then refines each answer by a hard local
# search, single-cell flips scored by a bit-packed exact step, which fixes cells that a descent
# leaves wrong; its scores, with and without the search, are on the
# :doc:`benchmarks page </benchmarks>`.
