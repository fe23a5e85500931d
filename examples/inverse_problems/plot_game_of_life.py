"""
Reversing the Game of Life
==========================

Conway's Game of Life is pure control flow: a cell is born with exactly three live neighbours
and survives with two or three. Relaxing those two comparisons with :func:`softflow.between` and
the cell's own state with :func:`softflow.soft_if` turns one step of the game into a smooth map
of probability boards, so gradient descent can search for a board that *evolves into* a given
one. This example reverses boards of the Kaggle competition "Conway's Reverse Game of Life 2020"
with ``examples/game_of_life.py`` and scores the result. The gradient descent gets one step back
right almost everywhere; several steps back are harder, and there a hard local search that flips
single cells, started from the descent's answer, does most of the remaining work. The scores
below show both, the descent on its own and the combination.
"""

# %%
# The relaxed rule
# ----------------
# ``soft_step`` computes the expected number of live neighbours and blends the survival and the
# birth test by the probability that the cell is alive. At small softness it is the exact rule.

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import game_of_life as gol
import matplotlib.pyplot as plt
import numpy as np
from _gallery import output_dir, quick, save_figure
from matplotlib.animation import FuncAnimation, PillowWriter

QUICK = quick()
starts, stops, deltas = gol.kaggle_boards(64, seed=4)
boards = np.asarray(starts, np.float32)
print(
    "soft step == exact step at softness 0.01:",
    bool(np.allclose(gol.soft_step(boards, 0.01), gol.step(boards), atol=1e-6)),
)

# %%
# One step back
# -------------
# Take a target board and search for a predecessor by gradient descent alone (no local search
# here): 8 restarts in parallel, the softness annealed from 0.6 to 0.05 within each round, every
# few iterations the boards are hardened and checked with the exact rule.

target = np.asarray(gol.step(starts[:1]))
options = gol.SolverOptions(check_every=10, round_iterations=100 if QUICK else 200)
found, info = gol.reverse(
    target,
    np.array([1]),
    iterations=100 if QUICK else 400,
    search_iterations=0,
    options=options,
    return_info=True,
)
forward = np.asarray(gol.step(found))[0]
wrong = forward != target[0]
print(f"{int(wrong.sum())} of {wrong.size} cells wrong after one step")

fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
for ax, board, title in zip(
    axes,
    (target[0], found[0], forward),
    ("target", "found predecessor", "its next step"),
    strict=True,
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
# Loss and softness over the iterations
# -------------------------------------
# The loss falls as the boards commit to 0 or 1; each round starts again from fresh random
# boards with the softness reset.

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(info.loss, color="C0")
ax.set_xlabel("iteration")
ax.set_ylabel("loss (cross-entropy + density)", color="C0")
ax.set_yscale("log")
twin = ax.twinx()
twin.plot(info.softness, color="C1")
twin.set_ylabel("softness", color="C1")
fig.tight_layout()
save_figure(fig, "life_loss_softness")

# %%
# The board hardening
# -------------------
# The probabilities of the predecessor (first restart) at every check: grey cells are
# undecided, and as the softness falls they settle to black or white.

fig, ax = plt.subplots(figsize=(3.6, 3.6))
image = ax.imshow(info.snapshots[0], cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
ax.set_xticks([])
ax.set_yticks([])


def show(frame):
    image.set_data(info.snapshots[frame])
    ax.set_title(f"iteration {info.checks[frame]}")
    return (image,)


animation = FuncAnimation(fig, show, frames=len(info.snapshots), blit=False)
animation.save(output_dir() / "life_hardening.gif", writer=PillowWriter(fps=6))

# %%
# Score on the Kaggle protocol
# ----------------------------
# Boards drawn as in the competition, ``delta`` from 1 to 5. Several steps back are reversed
# one at a time by the descent, and its start board is compared with trivial boards (all dead,
# the target itself) by the exact error after ``delta`` steps. The best of them seeds a local
# search: simulated annealing over single-cell flips near the wrong cells, each proposal scored
# by the exact error after all ``delta`` steps, keeping the best board it meets. The bars show
# the three stages; the descent alone helps most for one or two steps back, beyond that the
# local search carries the score. The grey lines are reference scores: the all-dead board and
# places of the 2020 leaderboard. (Quick mode fixes small iteration counts instead of a time
# budget, so that compilation on a slow machine cannot eat the whole budget.)

if QUICK:
    count, budget = 30, {"iterations": 50, "search_iterations": 1000}
else:
    count, budget = 400, {"seconds": 240.0}
_, stops, deltas = gol.kaggle_boards(count, seed=1)
found, info = gol.reverse(stops, deltas, **budget, return_info=True)
result = gol.score_table(gol.board_errors(found, stops, deltas), deltas)
descent = gol.score_table(info.soft_errors, deltas)
seeded = gol.score_table(info.candidate_errors, deltas)
print(gol.format_table(result))

names = [name for name in result if name != "overall"] + ["overall"]
positions = np.arange(len(names))
fig, ax = plt.subplots(figsize=(8, 4))
stages = (
    (descent, "descent alone"),
    (seeded, "best of descent and trivial boards"),
    (result, "after the local search"),
)
for offset, (table, label) in zip((-0.27, 0.0, 0.27), stages, strict=True):
    ax.bar(positions + offset, [table[n]["mae"] for n in names], 0.27, label=label)
references = {"all dead": 0.146, "10th place": 0.0487, "6th": 0.0356, "1st": 0.00625}
for (label, value), style in zip(references.items(), ("-", "--", "-.", ":"), strict=True):
    ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=label)
ax.set_xticks(positions, names)
ax.set_ylabel("mean absolute error")
ax.set_title(f"{count} boards in {info.seconds:.0f} s")
ax.legend(fontsize=8, ncol=2)
fig.tight_layout()
save_figure(fig, "life_scores")
