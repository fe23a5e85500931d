"""
Reversing an elementary cellular automaton
==========================================

An elementary cellular automaton is a row of 0/1 cells that is updated all at once: the next
value of a cell is read from a table of eight entries, at the pattern that its left neighbour,
itself and its right neighbour form. Rule 30, one such table, is chaotic enough to have served as
a random number generator. Run forwards, the automaton is a table lookup; run backwards (which
row became this one, a few steps later?) it has no formula, and the exact program has no useful
gradient: the comparison that makes the cells and the integer index into the table are flat
everywhere.

The program on this page is written as public JAX code writes it: cells as integers, the
neighbours by ``jnp.roll``, the next row as ``TABLE[4 * left + 2 * centre + right]``.
:func:`softflow.relax` turns it, with no soft code written by hand, into the *probabilistic*
automaton: every cell is 1 with some probability, and the lookup is the expectation over the
eight patterns. Gradient descent on that program then searches for an initial row, and the exact
program checks what it finds. The searches are compared with searches that only run the exact
program (random rows, bit flips) under the same budget, and, for narrow rows, with the exact
answer found by trying every row.
"""

# %%
# The program
# -----------
# The row is a ring (``jnp.roll`` wraps around). Entry ``4 * left + 2 * centre + right`` of the
# table is the next value of a cell whose neighbourhood reads ``left centre right`` in binary;
# the rule's number written in binary is the table (Wolfram's numbering). ``run`` records the
# rows of ``steps`` steps with :func:`jax.lax.scan`. The unknown initial row is held as real
# numbers, one per cell, and a cell is 1 where its number is positive: ``initial_row`` is the
# only place where the program turns numbers into cells.
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _gallery import output_dir, quick, save_figure
from jax import lax
from matplotlib.animation import FuncAnimation, PillowWriter
from tqdm import tqdm

import softflow as sf

QUICK = quick()
RULE = 30
TABLE = jnp.array([(RULE >> k) & 1 for k in range(8)], jnp.int32)
MAX_STEPS = 4  # the searches go back 1 to MAX_STEPS steps


def step(row):
    """One step of the automaton on a ring of 0/1 cells."""
    left, right = jnp.roll(row, 1), jnp.roll(row, -1)
    return TABLE[4 * left + 2 * row + right]


def run(row, steps):
    """The rows after 1, 2, ..., ``steps`` steps."""

    def body(row, _):
        row = step(row)
        return row, row

    return lax.scan(body, row, None, length=steps)[1]


def initial_row(logits):
    return (logits > 0).astype(jnp.int32)


def row_after(logits, steps):
    """The row ``steps`` steps (1 to ``MAX_STEPS``, an integer) after ``initial_row(logits)``."""
    return run(initial_row(logits), MAX_STEPS)[steps - 1]


print("rule", RULE, "table (entries 0 to 7):", TABLE.tolist())

# %%
# What ``relax`` makes of it
# --------------------------
# ``explain`` lists the two operations that are relaxed: the comparison, which becomes
# :func:`~softflow.greater` (cell :math:`i` is 1 with probability
# :math:`s(\text{logit}_i / \tau)`), and the lookup, which becomes the expectation of the table
# over the candidate indices. Everything in between acts on each candidate: the rolled cells,
# ``4 * left + 2 * centre + right``, the wrap of a negative index. The three cells of a
# neighbourhood are independent, so the index is one of eight patterns with the product of
# their probabilities, and the next cell is 1 with probability
#
# .. math:: P(\text{next}_i = 1) = \sum_{l, c, r \in \{0, 1\}} \text{TABLE}[4l + 2c + r] \,
#    p_{i-1}(l) \, p_i(c) \, p_{i+1}(r).
#
# The row crosses the ``scan`` as a probability per cell, so the relaxed ``run`` is the
# probabilistic automaton in which every cell is drawn independently at every step. (The
# integer ``steps`` is not relaxed: integer arguments stay exact.)
relaxed = sf.relax(row_after, softness=0.5)
example = jax.random.normal(jax.random.key(0), (16,))
for op in relaxed.explain(example, 2):
    print(op.source.split("/")[-1], op.primitive, "->", op.rule)

# %%
# In ``mode="hard"`` the relaxed program is the program itself, and at a small softness the
# relaxed program gives the exact cells (their probabilities are 0 or 1 to within rounding). For
# one step the relaxed program is exact at any softness, since a cell's neighbourhood holds three
# different, independent cells: here it is checked against the probability over all
# :math:`2^{12}` initial rows of a ring of 12 cells, each row weighted by its probability.
for steps in range(1, MAX_STEPS + 1):
    exact = row_after(example, steps)
    assert jnp.array_equal(sf.relax(row_after, mode="hard")(example, steps), exact)
    cold = sf.relax(row_after, softness=1e-3)(example, steps)
    assert float(jnp.max(jnp.abs(cold - exact))) < 1e-6

narrow = jax.random.normal(jax.random.key(1), (12,))
every_row = (np.arange(2**12)[:, None] >> np.arange(12)) & 1
p_one = np.asarray(jax.nn.sigmoid(narrow / 0.5), np.float64)
weights = np.prod(np.where(every_row == 1, p_one, 1 - p_one), axis=1)
next_rows = np.asarray(jax.vmap(step)(jnp.asarray(every_row, jnp.int32)), np.float64)
by_enumeration = weights @ next_rows
by_relax = sf.relax(row_after, softness=0.5)(narrow, 1)
print("one step, largest difference from the enumeration:", np.abs(by_relax - by_enumeration).max())

# %%
# Uncertainty in the initial row spreads. Below, one diagram runs the exact automaton from a
# random row of 64 cells; the others run the relaxed automaton from the same row (logits of
# :math:`\pm 3`, so that the cells are almost certain) with five cells in the middle made
# uncertain (logit 0: probability one half). Grey cells are uncertain: rule 30 carries the
# uncertainty to the left at one cell per step and a little slower to the right, and inside that
# cone the probabilities are close to one half. A descent has to find the initial row through
# this blur.
WIDE, DIAGRAM_STEPS = 64, 32
demo_row = jax.random.bernoulli(jax.random.key(2), 0.5, (WIDE,)).astype(jnp.int32)
demo_logits = 3.0 * (2.0 * demo_row - 1.0)
blurred = demo_logits.at[WIDE // 2 - 2 : WIDE // 2 + 3].set(0.0)


def diagram(logits, softness):
    """The initial row's probabilities and those of the ``DIAGRAM_STEPS`` rows after it."""
    rows = sf.relax(lambda x: run(initial_row(x), DIAGRAM_STEPS), softness=softness)(logits)
    return jnp.concatenate([jax.nn.sigmoid(logits / softness)[None], rows])


exact_diagram = jnp.concatenate([demo_row[None], run(demo_row, DIAGRAM_STEPS)])
fig, axes = plt.subplots(1, 3, figsize=(11, 4.2), sharey=True)
panels = [
    (exact_diagram, "exact, from the row"),
    (diagram(blurred, 1.0), "relaxed, softness 1, 5 cells at 1/2"),
    (diagram(blurred, 0.1), "relaxed, softness 0.1, 5 cells at 1/2"),
]
for ax, (image, title) in zip(axes, panels, strict=True):
    ax.imshow(image, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("cell")
axes[0].set_ylabel("step")
fig.tight_layout()
save_figure(fig, "automaton_uncertainty")

# %%
# The inverse problem
# -------------------
# Targets: a random initial row of ``WIDTH`` cells is run for ``steps`` steps (1 to
# ``MAX_STEPS``); the row it reaches is the target, and any initial row that reaches it counts
# as a solution. The unknowns are ``WIDTH`` logits. The loss is the cross-entropy between the
# relaxed row after ``steps`` steps (probabilities) and the target. Adam descends on it; the
# softness decays from 1 to 0.1 (a traced argument: the jitted update compiles once), and noise
# on the logits, annealed to zero, shakes the restarts out of poor rows early on. Every target
# gets ``RESTARTS`` restarts; all targets and restarts run as one batch. After every iteration
# the exact program checks the rows: a target is solved when one of its restarts' rows reaches it
# exactly.
WIDTH = 16
TARGETS_PER_STEP = 2 if QUICK else 8
RESTARTS = 32 if QUICK else 64
ITERATIONS = 150 if QUICK else 300

target_steps = np.repeat(np.arange(1, MAX_STEPS + 1), TARGETS_PER_STEP)
hidden = jax.random.bernoulli(jax.random.key(3), 0.5, (len(target_steps), WIDTH)).astype(jnp.int32)
all_rows = jax.vmap(lambda row: run(row, MAX_STEPS))(hidden)
targets = all_rows[jnp.arange(len(target_steps)), target_steps - 1]

softness_schedule = optax.exponential_decay(1.0, ITERATIONS, 0.1)
noise_schedule = optax.linear_schedule(2.0, 0.0, ITERATIONS)
optimiser = optax.adam(0.3)


def loss(logits, target, steps, softness, noise):
    probability = sf.relax(row_after, softness=softness)(logits + noise, steps)
    probability = jnp.clip(probability, 1e-6, 1 - 1e-6)
    return -jnp.mean(target * jnp.log(probability) + (1 - target) * jnp.log1p(-probability))


# One row of the batch per (target, restart).
batch_targets = jnp.repeat(targets, RESTARTS, axis=0).astype(jnp.float32)
batch_steps = jnp.repeat(jnp.asarray(target_steps), RESTARTS)
exact_after = jax.jit(jax.vmap(row_after))


@jax.jit
def update(logits, opt_state, key, iteration):
    noise = noise_schedule(iteration) * jax.random.normal(key, logits.shape)
    softness = softness_schedule(iteration)
    losses, grads = jax.vmap(jax.value_and_grad(loss), (0, 0, 0, None, 0))(
        logits, batch_targets, batch_steps, softness, noise
    )
    updates, opt_state = optimiser.update(grads, opt_state)
    logits = optax.apply_updates(logits, updates)
    wrong = jnp.sum(exact_after(logits, batch_steps) != batch_targets, axis=-1)
    return logits, opt_state, losses, wrong


def descend(seed):
    """The descent on every target; the iteration (1, 2, ...) at which each restart first
    reaches its target exactly (0: never), the loss and wrong cells per iteration, and the
    initial rows' probabilities of the first target's restarts every few iterations."""
    logits = jax.random.normal(jax.random.key(seed), (len(batch_steps), WIDTH))
    opt_state = optimiser.init(logits)
    solved_at = np.zeros(len(batch_steps), int)
    losses, wrongs, snapshots = [], [], []
    for iteration in tqdm(range(ITERATIONS), desc="descent", disable=None):
        if iteration % 3 == 0:
            snapshots.append(np.asarray(jax.nn.sigmoid(logits[:RESTARTS])))
        key = jax.random.fold_in(jax.random.key(seed + 1), iteration)
        logits, opt_state, loss_values, wrong = update(logits, opt_state, key, iteration)
        wrong = np.asarray(wrong)
        solved_at[(solved_at == 0) & (wrong == 0)] = iteration + 1
        losses.append(np.asarray(loss_values))
        wrongs.append(wrong)
    return logits, solved_at, np.array(losses), np.array(wrongs), snapshots


start = time.perf_counter()
final_logits, solved_at, loss_history, wrong_history, snapshots = descend(seed=10)
descent_seconds = time.perf_counter() - start


def per_target(first_hits):
    """The first hit of each target over its restarts (0: none), from one entry per restart."""
    hits = first_hits.reshape(len(target_steps), -1)
    return np.where((hits > 0).any(axis=1), np.where(hits > 0, hits, np.inf).min(axis=1), 0)


descent_hits = per_target(solved_at)
print(f"descent: {int((descent_hits > 0).sum())} of {len(target_steps)} targets reversed")

# %%
# The loss of each restart of the first target (a row reached in one step), and the wrong cells
# of its rows under the exact program: restarts that reach zero wrong cells have found a
# solution.
fig, (ax_loss, ax_wrong) = plt.subplots(1, 2, figsize=(11, 3.6))
ax_loss.plot(loss_history[:, :RESTARTS], color="C0", alpha=0.3, linewidth=0.8)
ax_loss.set_yscale("log")
ax_loss.set_xlabel("iteration")
ax_loss.set_ylabel("cross-entropy (relaxed program)")
twin = ax_loss.twinx()
twin.plot([float(softness_schedule(i)) for i in range(ITERATIONS)], color="C1")
twin.set_ylabel("softness", color="C1")
ax_wrong.plot(wrong_history[:, :RESTARTS], color="C2", alpha=0.3, linewidth=0.8)
ax_wrong.set_xlabel("iteration")
ax_wrong.set_ylabel("wrong cells (exact program)")
fig.tight_layout()
save_figure(fig, "automaton_loss")

# %%
# Searches on the exact program
# -----------------------------
# Every search below only runs the exact program, and each gets, per target, as many runs of it
# as the descent made relaxed evaluations (``RESTARTS`` x ``ITERATIONS``):
#
# * **random search**: that many random rows;
# * **bit flips**: ``RESTARTS`` chains from random rows, each flipping one random cell per run and
#   keeping the flip unless it makes more cells of the target wrong (a local search);
# * **all rows** (brute force): every one of the :math:`2^{16}` rows, which also tells how many
#   solutions each target has.
budget = RESTARTS * ITERATIONS
wrong_cells = jax.jit(
    jax.vmap(lambda row, target, steps: jnp.sum(run(row, MAX_STEPS)[steps - 1] != target))
)


def random_search(seed):
    rows = jax.random.bernoulli(jax.random.key(seed), 0.5, (len(target_steps), budget, WIDTH))
    wrong = jax.vmap(
        lambda rows, target, steps: wrong_cells(
            rows.astype(jnp.int32), jnp.broadcast_to(target, rows.shape), jnp.full(budget, steps)
        )
    )(rows, targets, jnp.asarray(target_steps))
    wrong = np.asarray(wrong)
    return np.where((wrong == 0).any(axis=1), (wrong == 0).argmax(axis=1) + 1, 0)


@jax.jit
def flip_chains(rows, chain_targets, chain_steps, key):
    """``ITERATIONS`` bit flips per chain; the wrong cells of every chain after every flip."""
    chains = jnp.arange(rows.shape[0])

    def flip(carry, key):
        rows, wrong = carry
        cell = jax.random.randint(key, chains.shape, 0, WIDTH)
        flipped = rows.at[chains, cell].set(1 - rows[chains, cell])
        new_wrong = wrong_cells(flipped, chain_targets, chain_steps)
        keep = new_wrong <= wrong
        rows = jnp.where(keep[:, None], flipped, rows)
        wrong = jnp.where(keep, new_wrong, wrong)
        return (rows, wrong), wrong

    start = wrong_cells(rows, chain_targets, chain_steps)
    return lax.scan(flip, (rows, start), jax.random.split(key, ITERATIONS))[1]


def bit_flips(seed):
    rows = jax.random.bernoulli(jax.random.key(seed), 0.5, (len(batch_steps), WIDTH))
    wrong = np.asarray(
        flip_chains(rows.astype(jnp.int32), batch_targets, batch_steps, jax.random.key(seed + 1))
    )
    solved = (wrong == 0).any(axis=0)
    # One run per flip after one for the start (the start is counted with the first flip).
    return per_target(np.where(solved, (wrong == 0).argmax(axis=0) + 1, 0))


random_hits = random_search(seed=20)
flip_hits = bit_flips(seed=30)

every = jnp.asarray((np.arange(2**WIDTH)[:, None] >> np.arange(WIDTH)) & 1, jnp.int32)
every_run = jax.jit(jax.vmap(lambda row: run(row, MAX_STEPS)))(every)
solutions = np.array(
    [
        int(jnp.sum(jnp.all(every_run[:, steps - 1] == target, axis=-1)))
        for target, steps in zip(targets, target_steps, strict=True)
    ]
)
assert np.all(solutions >= 1)  # the hidden row itself is one

# %%
# What each costs
# ---------------
# One relaxed evaluation with its gradient against one exact evaluation, both timed in the batch
# of all targets and restarts on this machine: the descent's budget in exact runs is its number
# of evaluations times this ratio.


def seconds(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))
    begin = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - begin) / repeats


probe = jax.random.normal(jax.random.key(4), (len(batch_steps), WIDTH))
probe_state = optimiser.init(probe)
cost_ratio = seconds(update, probe, probe_state, jax.random.key(5), 0) / seconds(
    exact_after, probe, batch_steps
)
print(f"one relaxed evaluation with its gradient costs {cost_ratio:.0f} exact evaluations")

# %%
# The table: for each number of steps, how many of the targets each search reversed, with the
# median number of evaluations it needed (over the targets it reversed; for the descent:
# iterations x restarts, as all restarts run side by side).
print(
    f"width {WIDTH}, rule {RULE}: {TARGETS_PER_STEP} targets per number of steps; budget "
    f"{budget} evaluations per target"
)
print(f"{'steps':>5s} {'solutions':>9s} {'descent':>14s} {'bit flips':>14s} {'random':>14s}")
for steps in range(1, MAX_STEPS + 1):
    chosen = target_steps == steps
    line = f"{steps:5d} {np.median(solutions[chosen]):9.0f}"
    for hits, scale in ((descent_hits, RESTARTS), (flip_hits, RESTARTS), (random_hits, 1)):
        found = hits[chosen][hits[chosen] > 0] * scale
        median = f"{np.median(found):.0f}" if len(found) else "-"
        line += f" {int((hits[chosen] > 0).sum()):3d}/{chosen.sum():<2d} {median:>7s}"
    print(line)
print(f"brute force: {2**WIDTH} evaluations per target, every target reversed")

# %%
# Where each wins
# ---------------
# Counted in program runs, the descent reverses the targets of one and two steps with fewer runs
# than the bit flips, and random rows almost never hit (a target has one or two solutions among
# :math:`2^{16}` rows). But a relaxed run with its gradient costs tens of exact runs, and the
# blur grows with the number of steps: counted in exact-run time, and three or four steps back,
# the local search on the exact program is the better tool here. Trying every row is exact and
# certain at 16 cells, and doubles in cost with every cell; the descent and the bit flips cost
# the same per run at any width. The comparison in exact-run time, from the numbers above:
in_exact_runs = {
    "descent": descent_hits * RESTARTS * cost_ratio,  # 0 stays 0: not reversed
    "bit flips": flip_hits * RESTARTS,
}
for name, cost in in_exact_runs.items():
    found = cost[cost > 0]
    median = f"{np.median(found):.0f}" if len(found) else "-"
    print(f"{name:>9s}: {len(found)} of {len(cost)} targets, median {median} exact-run times")

# %%
# The descent on the first target, as the exact program sees it: the probabilities of the
# initial row of every restart (one row per restart) as they settle to 0 and 1 (saved as a GIF).
fig_anim, ax_anim = plt.subplots(figsize=(5, 4.5))
image = ax_anim.imshow(snapshots[0], cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
ax_anim.set_xlabel("cell of the initial row")
ax_anim.set_ylabel("restart")
title = ax_anim.set_title("")
fig_anim.tight_layout()


def draw(frame):
    image.set_data(snapshots[frame])
    title.set_text(f"iteration {3 * frame}")
    return [image, title]


animation = FuncAnimation(fig_anim, draw, frames=len(snapshots), blit=False)
animation.save(output_dir() / "automaton_descent.gif", writer=PillowWriter(fps=10))
plt.show()
