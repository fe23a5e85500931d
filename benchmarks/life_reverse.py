"""The Kaggle-protocol Game of Life solver: multi-step descent, bit-packed local search, sharding.

The gallery page ``examples/inverse_problems/plot_game_of_life.py`` teaches the idea on a few
boards; this module is the solver that the benchmarks (``life_cpu.py``, ``life_gpu.py``,
``life_throughput.py``) run on thousands of boards within a time budget.

Life's rule is pure control flow: a cell is born if exactly three of its eight neighbours are
alive, and a live cell survives if two or three are. :func:`probabilistic_step` writes that rule
for a board of *probabilities*, the cells read as independent coins: the exact law of each cell's
number of live neighbours (:func:`softflow.count_expectation`) gives the probability that the cell
is alive one step later. On 0/1 boards it is the exact step; on boards of probabilities it is
differentiable in every cell. :func:`reverse` then finds, for a target board, a board that evolves
into it after ``delta`` steps:

* a gradient descent on a grid of logits per board goes through all ``delta`` steps at once (a
  :func:`jax.lax.scan` over the steps): the logits plus Gaussian noise, through a sigmoid at an
  annealed softness, make the start board; ``delta`` probabilistic steps carry it forward; the
  loss is the squared difference from the target. The noise falls to zero and the softness
  towards hard within each *round*; many random restarts run in parallel, and new rounds start
  from fresh random logits. (Reversing one step at a time, the previous engine, loses to the
  all-dead board from ``delta`` = 3 on when used alone: a predecessor of the target need not
  have predecessors of its own.)
* every few iterations each restart is hardened (thresholded at 1/2) and checked with the exact
  :func:`step`; the best start board so far (fewest wrong cells after ``delta`` steps, then
  fewest live cells) is kept;
* the descent's board is compared with trivial candidates (an all-dead board, the target, the
  target's surviving cells) by the exact error after ``delta`` steps, so the answer is never worse
  than any of them;
* finally a hard local search (:func:`local_search`) flips single cells and pairs of
  neighbouring cells of that start board, scoring each proposal by the exact error after all
  ``delta`` steps: simulated annealing at a fixed temperature that keeps the best board it
  meets, so it never returns a worse board. The search packs each row of a board into the bits
  of one integer and steps all cells of a row with a few bitwise operations, some thirty times
  faster than a cell per byte. The descent's result on its own is reported separately
  (:attr:`ReverseInfo.soft_errors`).

The batch of boards is split over every available device with :mod:`jax.sharding`, so the same
call uses one CPU, all GPUs of a machine, or (after :func:`jax.distributed.initialize`) several
machines. On a CPU, make one XLA device per core before jax starts
(``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``, as ``life_cpu.py`` does): each
device then runs its share of the boards on one thread, and the local search ran 2.2 to 2.6
times faster on two cores than on one device that spreads its loops over both.

Command line::

    python benchmarks/life_reverse.py kaggle --n 1000 --seconds 300
    python benchmarks/life_reverse.py image --text softflow --out life_softflow.png

The first generates boards by the protocol of Kaggle's "Conway's Reverse Game of Life 2020" and
prints the score per ``delta``; the second renders a word into a board, reverses it one step and
saves the figure.
"""

import argparse
import dataclasses
import functools
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

import softflow as sf

#: Side of the boards of the Kaggle protocol (a 25 x 25 torus).
KAGGLE_SIZE = 25
#: Largest number of steps that :func:`reverse` undoes.
MAX_DELTA = 5
#: Iterations that :func:`reverse` runs when neither ``seconds`` nor ``iterations`` is given.
DEFAULT_ITERATIONS = 400
#: Local-search iterations of :func:`reverse` when neither ``seconds`` nor
#: ``search_iterations`` is given.
DEFAULT_SEARCH_ITERATIONS = 2000
#: Widest board the local search handles: a row is packed into the bits of one uint32.
MAX_SEARCH_WIDTH = 32


#: Offsets (rows, columns) of the eight neighbours of a cell.
_NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]


def _neighbour_count(board):
    """Sum of the eight neighbours of every cell on a torus (last two axes), in 4 rolls."""
    column = board + jnp.roll(board, 1, axis=-2) + jnp.roll(board, -1, axis=-2)
    block = column + jnp.roll(column, 1, axis=-1) + jnp.roll(column, -1, axis=-1)
    return block - board


def step(board):
    """One exact step of Conway's Game of Life (B3/S23) on a torus.

    Arguments:
        board: an integer, boolean or float array of 0/1 cells; the last two axes are the rows
            and columns of the board (wrapping around at the edges), leading axes are a batch.

    Returns:
        The next board, with the shape and dtype of ``board``.
    """
    board = jnp.asarray(board)
    alive = board.astype(jnp.int32)
    count = _neighbour_count(alive)
    born_or_survives = (count == 3) | ((alive == 1) & (count == 2))
    return born_or_survives.astype(board.dtype)


def evolve(boards, deltas):
    """Apply ``deltas[b]`` exact steps to ``boards[b]`` (each delta between 0 and ``MAX_DELTA``).

    Arguments:
        boards: 0/1 array of shape (B, H, W).
        deltas: integer array of shape (B,).

    Returns:
        The evolved boards, shape and dtype of ``boards``.
    """
    boards = jnp.asarray(boards)
    deltas = jnp.asarray(deltas)
    for index in range(MAX_DELTA):
        boards = jnp.where((index < deltas)[:, None, None], step(boards), boards)
    return boards


def probabilistic_step(board):
    r"""The probability that each cell is alive one step later, the cells independent coins.

    With :math:`N` the number of live neighbours of a cell and :math:`p` the probability that
    the cell is alive, a live cell survives on two or three neighbours and a dead one is born on
    three:

    .. math:: P(\text{alive next}) = p\,P(N \in \{2, 3\}) + (1 - p)\,P(N = 3)
        = P(N = 3) + p\,P(N = 2),

    with the law of :math:`N` from :func:`softflow.count_distribution` (exact when the eight
    neighbours are independent coins). On 0/1 boards it is :func:`step` exactly; on boards of
    probabilities it is differentiable in every cell, and its derivative at a 0/1 board says
    how each cell's next state changes when one neighbour flips. After one step the cells of
    the new board are correlated (neighbouring cells share neighbours), so several of these
    steps in a row are a mean-field approximation of the law of the evolved board.

    Arguments:
        board: float array of probabilities in [0, 1]; the last two axes are the board.

    Returns:
        The probabilities of the next board, with the shape and dtype of ``board``.
    """
    # The eight neighbours as slices of the board padded around the torus: a list of arrays is
    # counted without stacking it into one (slices fuse into the count, a stack would be copied).
    height, width = board.shape[-2:]
    padded = jnp.pad(board, [(0, 0)] * (board.ndim - 2) + [(1, 1), (1, 1)], mode="wrap")
    neighbours = [
        padded[..., 1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width] for dr, dc in _NEIGHBOURS
    ]
    # Born on three live neighbours, survives on two or three: f(N) = [0, 0, alive, 1][N].
    return sf.count_expectation(neighbours, [0.0, 0.0, board, 1.0])


# --------------------------------------------------------------------------- the Kaggle protocol


def kaggle_boards(n: int, *, seed: int = 0, size: int = KAGGLE_SIZE):
    """Draw ``n`` instances by the protocol of Kaggle's "Conway's Reverse Game of Life 2020".

    Density :math:`\\rho \\sim U(0.01, 0.99)`, cells alive with probability :math:`\\rho`, five
    warm-up steps give ``start``, :math:`\\delta \\sim U\\{1..5\\}` and ``stop`` is ``delta`` steps
    of ``start``; instances whose ``stop`` is empty are drawn again.

    Arguments:
        n: number of instances.
        seed: seed of the NumPy random generator.
        size: side of the square torus.

    Returns:
        ``(starts, stops, deltas)``: uint8 arrays of shape (n, size, size) and int32 deltas (n,).
    """
    if n < 1:
        raise ValueError(f"n must be a positive number of boards; got {n!r}.")
    rng = np.random.default_rng(seed)
    starts, stops, deltas = [], [], []
    remaining = n
    while remaining > 0:
        draw = remaining + remaining // 4 + 8
        density = rng.uniform(0.01, 0.99, size=(draw, 1, 1))
        board = (rng.random((draw, size, size)) < density).astype(np.uint8)
        for _ in range(5):
            board = step(board)
        delta = rng.integers(1, MAX_DELTA + 1, size=draw).astype(np.int32)
        stop = np.asarray(evolve(board, delta))
        keep = stop.reshape(draw, -1).any(axis=1)
        starts.append(np.asarray(board)[keep][:remaining])
        stops.append(stop[keep][:remaining])
        deltas.append(delta[keep][:remaining])
        remaining -= len(deltas[-1])
    return np.concatenate(starts), np.concatenate(stops), np.concatenate(deltas)


def board_errors(starts, stops, deltas):
    """Mean absolute error per board between ``deltas`` steps of ``starts`` and ``stops``.

    Arguments:
        starts: predicted start boards, 0/1 array (B, H, W).
        stops: target boards, 0/1 array (B, H, W).
        deltas: integer steps (B,).

    Returns:
        A float NumPy array (B,); 0 exactly where the start is a true predecessor.
    """
    evolved = np.asarray(evolve(np.asarray(starts, np.uint8), deltas))
    wrong = evolved != np.asarray(stops, np.uint8)
    return wrong.reshape(len(wrong), -1).mean(axis=1)


def score_table(errors, deltas) -> dict:
    """Overall and per-delta score (mean absolute error) and exact-solve rate, as a dict."""
    errors = np.asarray(errors, np.float64)
    deltas = np.asarray(deltas)
    table = {
        "overall": {
            "mae": float(errors.mean()),
            "solved": float((errors == 0).mean()),
            "boards": len(errors),
        }
    }
    for delta in range(1, MAX_DELTA + 1):
        chosen = errors[deltas == delta]
        if len(chosen):
            table[f"delta={delta}"] = {
                "mae": float(chosen.mean()),
                "solved": float((chosen == 0).mean()),
                "boards": len(chosen),
            }
    return table


def format_table(table: dict) -> str:
    """The score table as aligned text lines."""
    lines = [f"{'':10s} {'MAE':>8s} {'solved':>8s} {'boards':>7s}"]
    for name, row in table.items():
        lines.append(f"{name:10s} {row['mae']:8.4f} {row['solved']:8.1%} {row['boards']:7d}")
    return "\n".join(lines)


_COMPILED: dict = {}


def _compiled(jitted, *args):
    """``jitted`` compiled ahead of time for the shapes and shardings of ``args`` (cached).

    A time budget then starts after the compilation instead of charging it to the first chunk.
    """
    key = (jitted, tuple((a.shape, a.dtype, getattr(a, "sharding", None)) for a in _leaves(args)))
    if key not in _COMPILED:
        _COMPILED[key] = jitted.lower(*args).compile()
    return _COMPILED[key]


def _leaves(tree):
    return [
        np.asarray(a) if isinstance(a, int | float) else a for a in jax.tree_util.tree_leaves(tree)
    ]


# --------------------------------------------------------------------------------- the solver


@dataclasses.dataclass(frozen=True)
class SolverOptions:
    """Settings of the descent in :func:`reverse` (every field has a tuned default).

    One *round* of the descent anneals two things together, from its first iteration to its
    last: the softness of the cells (the temperature of the sigmoid that makes logits into
    probabilities) and the scale of the Gaussian noise added to the logits. A new round starts
    from fresh random logits; the best hardened board found so far is kept.

    Attributes:
        restarts: independent random starts per board, optimised in parallel.
        round_iterations: iterations of one annealing round.
        check_every: iterations between two hardening checks (one jitted call runs this many).
        learning_rate: Adam step size on the logits.
        softness_start: softness of the cells at the beginning of a round.
        softness_end: softness at the end of a round (annealed geometrically).
        noise_start: standard deviation of the logit noise at the beginning of a round; it
            falls linearly to 0 at the end of the round.
        init_scale: standard deviation of the random initial logits.
        init_bias: mean of the random initial logits (negative: start from sparse boards).
        search_proposals: flips that the local search scores per iteration (it moves to the
            best of them, subject to the annealing acceptance).
        search_pairs: how many of those proposals flip a cell together with one of its eight
            neighbours, the others flipping one cell (pairs cross the barriers between single
            flips: on 100 Kaggle-protocol boards, 20,000 iterations, 0.0276 MAE against 0.0319
            with single flips only).
        search_check_every: local-search iterations per jitted call (the time budget is
            checked between calls).
        search_temperature: temperature of the local search's acceptance, in wrong cells: a
            move that adds ``k`` wrong cells is taken with probability ``exp(-k / T)``; 0 makes
            it a greedy search that still takes sideways moves.
        search_share: fraction of a ``seconds`` budget of :func:`reverse` reserved for the
            local search (the descent gets the rest, and its unused time goes to the search).
    """

    restarts: int = 2
    round_iterations: int = 200
    check_every: int = 10
    learning_rate: float = 0.2
    softness_start: float = 1.0
    softness_end: float = 0.1
    noise_start: float = 1.0
    init_scale: float = 1.0
    init_bias: float = -1.0
    search_proposals: int = 8
    search_pairs: int = 5
    search_check_every: int = 250
    search_temperature: float = 0.5
    search_share: float = 0.7

    def __post_init__(self):
        if self.restarts < 1 or self.round_iterations < 1 or self.check_every < 1:
            raise ValueError(
                "restarts, round_iterations and check_every must be positive; got "
                f"{self.restarts!r}, {self.round_iterations!r} and {self.check_every!r}."
            )
        if self.round_iterations % self.check_every:
            raise ValueError(
                f"round_iterations ({self.round_iterations}) must be a multiple of check_every "
                f"({self.check_every}): a round starts at a check."
            )
        if self.search_proposals < 1 or self.search_check_every < 1:
            raise ValueError(
                "search_proposals and search_check_every must be positive; got "
                f"{self.search_proposals!r} and {self.search_check_every!r}."
            )
        if not 0 <= self.search_pairs <= self.search_proposals:
            raise ValueError(
                f"search_pairs must lie in [0, search_proposals = {self.search_proposals}]; got "
                f"{self.search_pairs!r}."
            )
        if not self.search_temperature >= 0:
            raise ValueError(f"search_temperature must be >= 0; got {self.search_temperature!r}.")
        if not 0 <= self.search_share < 1:
            raise ValueError(f"search_share must lie in [0, 1); got {self.search_share!r}.")

    def schedule(self, fraction: float) -> tuple[float, float]:
        """Softness of the cells and scale of the logit noise at a fraction of a round."""
        softness = self.softness_start * (self.softness_end / self.softness_start) ** fraction
        return softness, self.noise_start * (1 - fraction)


def _evolve_chunk(boards, delta, step_fn):
    """``delta`` steps (a traced scalar, at most :data:`MAX_DELTA`) of ``step_fn`` on ``boards``.

    A scan over :data:`MAX_DELTA` steps whose steps beyond ``delta`` are skipped by a ``cond``
    (a chunk holds boards of one delta), so that every delta shares one compiled program and
    costs only its own steps.
    """

    # Each step is recomputed in the backward pass: a cond otherwise keeps the intermediate
    # values of its branch for every step (also the skipped ones), and XLA:CPU then slows down
    # many times.
    step_fn = jax.checkpoint(step_fn)

    def one(boards, t):
        return jax.lax.cond(t < delta, step_fn, lambda b: b, boards), None

    return jax.lax.scan(one, boards, jnp.arange(MAX_DELTA))[0]


def _selection_key(candidates, targets, delta):
    """Rank of candidate start boards: wrong cells after ``delta`` steps, then live cells.

    Fewer is better. candidates (B, R, H, W) uint8, targets (B, H, W); returns int32 (B, R).
    """
    wrong = (_evolve_chunk(candidates, delta, step) != targets[:, None]).sum(axis=(-2, -1))
    live = candidates.astype(jnp.int32).sum(axis=(-2, -1))
    return wrong * (targets.shape[-1] * targets.shape[-2] + 1) + live


@functools.lru_cache(maxsize=8)
def _descent(options: SolverOptions):
    """Jitted pieces of the multi-step descent for one set of options (cached across calls)."""
    optimizer = optax.adam(options.learning_rate)

    def loss(logits, key, targets, delta, softness, noise):
        cells = logits + noise * jax.random.normal(key, logits.shape)
        board = sf.greater(cells, 0.0, softness=softness)
        evolved = _evolve_chunk(board, delta, probabilistic_step)
        # Squared error per restart: it trained better than the expected number of wrong
        # cells (an absolute error) and than the cross-entropy in our trials.
        error = ((evolved - targets[:, None]) ** 2).mean(axis=(-2, -1))
        return error.sum(), error.mean()

    def new_round(key, board_index, shape):
        def one(index):
            noise = jax.random.normal(jax.random.fold_in(key, index), shape)
            return options.init_bias + options.init_scale * noise

        logits = jax.vmap(one)(board_index)
        return logits, optimizer.init(logits)

    def advance(logits, opt_state, best, best_key, key, targets, delta, schedule):
        targets_float = targets.astype(logits.dtype)

        def one_iteration(carry, scheduled):
            logits, opt_state = carry
            index, softness, noise = scheduled
            grads, mean_error = jax.grad(loss, has_aux=True)(
                logits, jax.random.fold_in(key, index), targets_float, delta, softness, noise
            )
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(logits, updates), opt_state), mean_error

        (logits, opt_state), losses = jax.lax.scan(one_iteration, (logits, opt_state), schedule)
        candidates = (logits > 0).astype(jnp.uint8)
        keys = _selection_key(candidates, targets, delta)
        pick = jnp.argmin(keys, axis=1)
        found = jnp.take_along_axis(candidates, pick[:, None, None, None], axis=1)[:, 0]
        found_key = keys.min(axis=1)
        best = jnp.where((found_key < best_key)[:, None, None], found, best)
        return logits, opt_state, best, jnp.minimum(found_key, best_key), losses

    return jax.jit(new_round, static_argnums=2), jax.jit(advance, donate_argnums=(0, 1))


# ------------------------------------------------------------------------------ local search


def _pack_rows(boards: np.ndarray) -> np.ndarray:
    """0/1 boards (..., H, W) with W <= 32 -> uint32 rows (..., H); bit ``c`` is column ``c``."""
    weights = np.uint32(1) << np.arange(boards.shape[-1], dtype=np.uint32)
    return (boards.astype(np.uint32) * weights).sum(axis=-1, dtype=np.uint32)


def _unpack_rows(rows: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`_pack_rows`: uint32 rows (..., H) -> uint8 boards (..., H, width)."""
    rows = np.asarray(rows, np.uint32)
    return ((rows[..., None] >> np.arange(width, dtype=np.uint32)) & 1).astype(np.uint8)


def _packed_step(rows, width: int):
    """One exact step on boards packed by :func:`_pack_rows` (rows on the last axis).

    The eight neighbours are summed bit-parallel: each row adds its left and right neighbours
    (columns rotate within ``width`` bits) to itself, a 2-bit sum; the sums of the rows above
    and below and the left+right sum of the row itself are added with full adders into the bits
    ``s0 + 2 s1 + 4 s2`` of the count (a count of 8 wraps to 0, which is dead either way). A
    cell then lives when the count is 3, or 2 and it is alive: ``s1 & ~s2 & (s0 | alive)``.
    """
    mask = jnp.uint32((1 << width) - 1)

    def rotate(x, shift):
        return ((x >> shift) | (x << (width - shift))) & mask

    left, right = rotate(rows, 1), rotate(rows, width - 1)
    three_low = left ^ rows ^ right  # left + self + right = three_low + 2 * three_high
    three_high = (left & rows) | (right & (left ^ rows))
    two_low, two_high = left ^ right, left & right  # left + right alone
    up_low, up_high = jnp.roll(three_low, 1, axis=-1), jnp.roll(three_high, 1, axis=-1)
    down_low, down_high = jnp.roll(three_low, -1, axis=-1), jnp.roll(three_high, -1, axis=-1)
    ones = up_low ^ down_low ^ two_low
    carry = (up_low & down_low) | (two_low & (up_low ^ down_low))
    twos_sum = up_high ^ down_high ^ two_high
    twos_carry = (up_high & down_high) | (two_high & (up_high ^ down_high))
    twos = twos_sum ^ carry
    fours = twos_carry ^ (twos_sum & carry)
    return twos & ~fours & (ones | rows)


def _hash32(x):
    """A well-mixed uint32 hash of uint32 ``x`` (Wellons' lowbias32).

    The local search draws its random numbers by hashing a counter: threefry
    (``jax.random.bits``) cost about as much as scoring all the proposals of an iteration.
    """
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


@functools.lru_cache(maxsize=8)
def _search_kernel(width: int, proposals: int, pairs: int, iterations: int):
    """Jitted call of ``iterations`` local-search iterations on a batch of packed boards."""
    columns = jnp.arange(width, dtype=jnp.uint32)
    low_masks = (jnp.uint32(2) << columns) - 1  # bits 0..c set

    def evolve_packed(rows, delta):
        return jax.lax.fori_loop(0, delta, lambda _, x: _packed_step(x, width), rows)

    def wrong_cells(rows, target, delta):
        mismatch = evolve_packed(rows, delta) ^ target
        return mismatch, jax.lax.population_count(mismatch).sum(axis=-1).astype(jnp.int32)

    def proposal_cells(bits, mismatch, wrong, delta):
        """Cells within ``delta`` of uniformly drawn wrong cells: only those can fix them."""
        height = mismatch.shape[-1]
        per_row = jax.lax.population_count(mismatch).astype(jnp.int32)
        upto = jnp.arange(height)
        below = jnp.where(upto[None] <= upto[:, None], per_row[None], 0).sum(axis=1)
        rank = (bits[0] % jnp.maximum(wrong, 1).astype(jnp.uint32)).astype(jnp.int32)
        # The first index past ``rank`` is the number of indices not past it (sums are cheaper
        # than argmax on the CPU).
        row = jnp.minimum((below[None] <= rank[:, None]).sum(axis=1, dtype=jnp.int32), height - 1)
        rank_in_row = rank - (below[row] - per_row[row])
        # Wrong cells of the row in columns 0..c, for every c: a popcount, not a cumsum (which
        # XLA:CPU runs as a slow reduce_window).
        at_or_before = jax.lax.population_count(mismatch[row][:, None] & low_masks)
        column = (at_or_before.astype(jnp.int32) <= rank_in_row[:, None]).sum(
            axis=1, dtype=jnp.int32
        )
        span = (2 * delta + 1).astype(jnp.uint32)
        row = (row + (bits[1] % span).astype(jnp.int32) - delta) % height
        column = (column + (bits[2] % span).astype(jnp.int32) - delta) % width
        return row, column

    def cells_to_rows(row, column, height):
        """Packed boards (P, height) with one live cell each, at (row[p], column[p])."""
        one_cell = jnp.uint32(1) << column[:, None].astype(jnp.uint32)
        return jnp.where(jnp.arange(height)[None] == row[:, None], one_cell, jnp.uint32(0))

    def one_board(key, board, best, target, delta, temperature):
        height = board.shape[-1]
        mismatch, wrong = wrong_cells(board, target, delta)
        _, best_wrong = wrong_cells(best, target, delta)
        seed = jax.random.bits(key, (), jnp.uint32)
        counter = jnp.arange(4 * proposals, dtype=jnp.uint32).reshape(4, proposals)

        def iteration(index, carry):
            board, mismatch, wrong, best, best_wrong = carry
            bits = _hash32(seed ^ _hash32(index.astype(jnp.uint32) * (4 * proposals) + counter))
            row, column = proposal_cells(bits, mismatch, wrong, delta)
            # The last ``pairs`` proposals also flip one of the eight neighbours of their cell
            # (drawn from the low bits of bits[3]; the acceptance uses its high bits).
            neighbour = (bits[3] & 7).astype(jnp.int32)
            neighbour = neighbour + (neighbour >= 4)  # 0..8 without the centre, 4
            paired = jnp.arange(proposals) >= proposals - pairs
            flips = cells_to_rows(row, column, height) ^ jnp.where(
                paired[:, None],
                cells_to_rows(
                    (row + neighbour // 3 - 1) % height,
                    (column + neighbour % 3 - 1) % width,
                    height,
                ),
                0,
            )
            candidates = board[None] ^ flips
            candidate_mismatch, candidate_wrong = wrong_cells(candidates, target, delta)
            pick = jnp.argmin(candidate_wrong)
            change = (candidate_wrong[pick] - wrong).astype(jnp.float32)
            uniform = (bits[3, 0] >> 8).astype(jnp.float32) * 2.0**-24
            accept = (change <= 0) | (uniform < jnp.exp(-change / temperature))
            board = jnp.where(accept, candidates[pick], board)
            mismatch = jnp.where(accept, candidate_mismatch[pick], mismatch)
            wrong = jnp.where(accept, candidate_wrong[pick], wrong)
            better = wrong < best_wrong
            best = jnp.where(better, board, best)
            return board, mismatch, wrong, best, jnp.minimum(wrong, best_wrong)

        carry = (board, mismatch, wrong, best, best_wrong)
        board, _, _, best, best_wrong = jax.lax.fori_loop(0, iterations, iteration, carry)
        return board, best, best_wrong

    def run(key, board_index, boards, bests, targets, delta, temperature):
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(board_index)
        batched = jax.vmap(one_board, in_axes=(0, 0, 0, 0, None, None))
        return batched(keys, boards, bests, targets, delta, temperature)

    return jax.jit(run, donate_argnums=(2, 3))


def local_search(
    starts,
    stops,
    deltas,
    *,
    iterations: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    options: SolverOptions | None = None,
):
    """Improve start boards by flipping cells and pairs of cells, judged by the exact error.

    Simulated annealing at the fixed temperature ``options.search_temperature``: each iteration
    draws ``options.search_proposals`` cells near wrong cells of ``deltas`` steps of the current
    board (within ``delta`` cells of one: no other flip can fix a wrong cell), flips each (and,
    for ``options.search_pairs`` of them, one of its neighbours as well), scores every flipped
    board by its exact error after ``deltas`` steps, and moves to the best of them if the
    annealing accepts it. The best board met is returned, so no board gets worse. Boards are
    grouped by ``delta`` (each group runs exactly its number of steps) and all groups share one
    compiled shape.

    Arguments:
        starts: 0/1 start boards (B, H, W) with W <= :data:`MAX_SEARCH_WIDTH`.
        stops: 0/1 target boards (B, H, W).
        deltas: integer steps in 1..5, shape (B,).
        iterations: iterations per board (rounded up to a multiple of
            ``options.search_check_every``); with ``seconds`` as well it is an upper limit.
        seconds: bound on the wall time of the call (the groups share it by their work).
        seed: seed of the proposals; with a fixed iteration count the result depends only on
            the boards, the seed and the options, not on the devices or ``batch_size``.
        batch_size: boards per jitted call (the default takes the largest group at once).
        options: :class:`SolverOptions` (the ``search_*`` fields are used).

    Returns:
        The improved start boards, uint8 (B, H, W).

    Raises:
        ValueError: for malformed boards, boards wider than :data:`MAX_SEARCH_WIDTH`, or
            neither/non-positive ``iterations`` and ``seconds``.
    """
    stops, deltas = _check_inputs(stops, deltas)
    starts = np.asarray(starts)
    if starts.shape != stops.shape or not np.isin(starts, (0, 1)).all():
        raise ValueError(f"starts must be 0/1 boards of shape {stops.shape}; got {starts.shape}.")
    if stops.shape[-1] > MAX_SEARCH_WIDTH:
        raise ValueError(
            f"stops must be at most {MAX_SEARCH_WIDTH} cells wide for the local search; got "
            f"{stops.shape[-1]}."
        )
    if iterations is None and seconds is None:
        raise ValueError("local_search needs iterations, seconds or both.")
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be a positive integer; got {iterations!r}.")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be positive; got {seconds!r}.")
    options = options or SolverOptions()
    return _local_search(starts, stops, deltas, iterations, seconds, seed, batch_size, options)[0]


def _balanced_chunk(count: int, batch_size: int | None, device_count: int) -> int:
    """Boards per call: ``count`` split evenly into calls of at most ``batch_size`` boards."""
    calls = math.ceil(count / min(batch_size or count, count))
    return math.ceil(math.ceil(count / calls) / device_count) * device_count


def _local_search(starts, stops, deltas, iterations, seconds, seed, batch_size, options):
    """:func:`local_search` on checked inputs; also returns the fewest iterations run."""
    per_call = options.search_check_every
    calls = math.inf if iterations is None else math.ceil(iterations / per_call)
    width = stops.shape[-1]
    run = _search_kernel(width, options.search_proposals, options.search_pairs, per_call)
    sharding, device_count = _board_sharding()
    largest_group = max(int((deltas == d).sum()) for d in range(1, MAX_DELTA + 1))
    chunk = _balanced_chunk(largest_group, batch_size, device_count)
    fewest_calls = math.inf
    key = jax.random.key(seed)
    started = time.perf_counter()
    packed_starts, packed_stops = _pack_rows(starts), _pack_rows(stops)
    rows = _to_global(packed_starts[:1].repeat(chunk, axis=0), sharding)
    index = _to_global(np.zeros(chunk, np.int32), sharding)
    run = _compiled(
        run, key, index, rows, rows, rows, np.int32(1), np.float32(options.search_temperature)
    )
    seconds = None if seconds is None else seconds - (time.perf_counter() - started)
    clock = _Clock(seconds, int(deltas.sum()))
    result = starts.astype(np.uint8)
    for delta in range(1, MAX_DELTA + 1):
        group = np.nonzero(deltas == delta)[0]
        for low in range(0, len(group), chunk):
            members = group[low : low + chunk]
            # Padding repeats the last board; its copies are dropped again.
            padded = np.concatenate([members, np.repeat(members[-1:], chunk - len(members))])
            deadline = clock.start_task(delta * len(members))
            boards = _to_global(packed_starts[padded], sharding)
            best = _to_global(packed_starts[padded], sharding)
            targets = _to_global(packed_stops[padded], sharding)
            index = _to_global(padded.astype(np.int32), sharding)
            call = 0
            while call < calls and (call == 0 or clock.fits(deadline)):
                tick = time.perf_counter()
                boards, best, best_wrong = run(
                    jax.random.fold_in(key, call),
                    index,
                    boards,
                    best,
                    targets,
                    np.int32(delta),
                    np.float32(options.search_temperature),
                )
                best_wrong.block_until_ready()
                clock.check_seconds = time.perf_counter() - tick
                call += 1
            fewest_calls = min(fewest_calls, call)
            result[members] = _unpack_rows(_to_numpy(best), width)[: len(members)]
    return result, fewest_calls * per_call


@dataclasses.dataclass
class ReverseInfo:
    """What :func:`reverse` did, for plots and benchmarks.

    Attributes:
        iterations: descent iterations per board (the smallest over all chunks).
        search_iterations: local-search iterations per board (the smallest over all chunks; 0
            when the search did not run).
        loss: the loss (expected fraction of wrong cells) averaged over boards and restarts at
            every iteration (first chunk).
        softness: softness of the cells at every iteration (first chunk).
        noise: scale of the logit noise at every iteration (first chunk).
        checks: iteration number at every hardening check (first chunk).
        snapshots: probabilities of the start board of the first board (restart 0) at every
            check, shape (checks, H, W).
        soft_errors: per-board error (fraction of wrong cells) of the descent alone, without the
            trivial candidates and the local search.
        candidate_errors: per-board error of the best of the descent and the trivial
            candidates, the start of the local search.
        seconds: wall time of the call.
    """

    iterations: int = 0
    search_iterations: int = 0
    loss: list = dataclasses.field(default_factory=list)
    softness: list = dataclasses.field(default_factory=list)
    noise: list = dataclasses.field(default_factory=list)
    checks: list = dataclasses.field(default_factory=list)
    snapshots: list = dataclasses.field(default_factory=list)
    soft_errors: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    candidate_errors: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    seconds: float = 0.0


def _board_sharding():
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("boards",))
    return NamedSharding(mesh, PartitionSpec("boards")), mesh.size


def _board_sharded(tree, sharding: NamedSharding):
    """The arrays of ``tree`` split over the devices on their first (boards) axis.

    The optimiser's zero moments come out of a jitted call replicated on every device (they do
    not depend on the sharded input); the descent's compiled step expects them split like the
    logits.
    """
    return jax.tree.map(lambda x: jax.device_put(x, sharding) if x.ndim else x, tree)


def _to_global(array: np.ndarray, sharding: NamedSharding):
    """A global jax array sharded on its first axis (each process supplies its own shards)."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def _to_numpy(array) -> np.ndarray:
    if array.is_fully_addressable:
        return np.asarray(array)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def _check_inputs(stops, deltas):
    stops = np.asarray(stops)
    if stops.ndim != 3 or min(stops.shape) < 1:
        raise ValueError(f"stops must have shape (B, H, W) with B, H, W >= 1; got {stops.shape}.")
    if not np.isin(stops, (0, 1)).all():
        raise ValueError("stops must hold 0/1 cells.")
    deltas = np.asarray(deltas)
    if deltas.shape != (len(stops),) or not np.issubdtype(deltas.dtype, np.integer):
        raise ValueError(
            f"deltas must be an integer array of shape ({len(stops)},); got {deltas.dtype} "
            f"{deltas.shape}."
        )
    if deltas.min() < 1 or deltas.max() > MAX_DELTA:
        raise ValueError(f"deltas must lie in 1..{MAX_DELTA}; got {deltas.min()}..{deltas.max()}.")
    return stops.astype(np.uint8), deltas.astype(np.int32)


class _Clock:
    """Splits a wall-time budget over units of work and predicts whether one more check fits."""

    def __init__(self, seconds, total_work):
        self.deadline = None if seconds is None else time.perf_counter() + seconds
        self.work_left = total_work
        self.check_seconds = None

    def start_task(self, work):
        """Deadline of a task of ``work`` units: its share of the remaining time."""
        if self.deadline is None:
            return None
        share = (self.deadline - time.perf_counter()) * work / self.work_left
        self.work_left -= work
        return time.perf_counter() + share

    def fits(self, task_deadline) -> bool:
        if task_deadline is None or self.check_seconds is None:
            return True
        return time.perf_counter() + self.check_seconds <= task_deadline


def _descend(targets, board_index, delta, *, boards, key, checks, clock, options, info, bar):
    """Best start boards (uint8, like ``targets``) found by the descent for one padded chunk.

    Every board of the chunk has the same ``delta``. ``boards`` is the number of real (not
    padding) boards: the chunk's share of the time budget is ``delta * boards`` work units. A
    round is ``options.round_iterations`` long, or shorter when the chunk's time share holds
    less (so that the anneal always runs to its end), or longer to use up a remainder.
    """
    sharding, _ = _board_sharding()
    new_round, advance = _descent(options)
    targets_device = _to_global(targets, sharding)
    index_device = _to_global(board_index, sharding)
    best = _to_global(np.zeros_like(targets), sharding)
    best_key = _to_global(np.full(len(targets), np.iinfo(np.int32).max, np.int32), sharding)
    shape = (options.restarts, *targets.shape[1:])
    every = options.check_every
    init_key, noise_key = jax.random.split(key)
    logits, opt_state = _board_sharded(new_round(init_key, index_device, shape), sharding)
    schedule = np.zeros((3, every), np.float32)
    advance = _compiled(
        advance,
        logits,
        opt_state,
        best,
        best_key,
        noise_key,
        targets_device,
        np.int32(delta),
        (schedule[0].astype(np.int32), *schedule[1:]),
    )  # compiled before the chunk's share of the time is measured
    deadline = clock.start_task(delta * boards)

    def round_checks(done_in_round: int) -> int:
        """Checks of the current round, ``done_in_round`` of them run already."""
        default = options.round_iterations // every
        left = checks - check + done_in_round
        if deadline is not None and clock.check_seconds is not None:
            fit = int((deadline - time.perf_counter()) / clock.check_seconds)
            left = min(left, done_in_round + max(fit, 0))
        # A remainder shorter than half a round joins this round.
        return max(1, left if left < 1.5 * default else default)

    record = not info.checks
    check = round_start = 0
    length = round_checks(0)
    while check < checks and (check == 0 or clock.fits(deadline)):
        if check == round_start + length:
            round_start = check
            length = round_checks(0)
            logits, opt_state = _board_sharded(
                new_round(jax.random.fold_in(init_key, check), index_device, shape), sharding
            )
        iteration = check * every
        indices = np.arange(iteration, iteration + every)
        fractions = (indices - round_start * every) / max(length * every - 1, 1)
        schedule = np.array([options.schedule(f) for f in fractions], np.float32).T
        tick = time.perf_counter()
        logits, opt_state, best, best_key, losses = advance(
            logits,
            opt_state,
            best,
            best_key,
            noise_key,
            targets_device,
            np.int32(delta),
            (indices.astype(np.int32), *schedule),
        )
        best_key.block_until_ready()
        clock.check_seconds = time.perf_counter() - tick  # predicts the next check
        check += 1
        if check == round_start + 1:  # the first timed check of a round plans its length
            length = round_checks(1)
        if record:
            info.loss.extend(np.asarray(losses).tolist())
            info.softness.extend(schedule[0].tolist())
            info.noise.extend(schedule[1].tolist())
            info.checks.append(iteration + every)
            info.snapshots.append(_to_numpy(jax.nn.sigmoid(logits[:1, 0]))[0])
        if bar is not None:
            bar.update(1)
    iterations = check * every
    info.iterations = iterations if info.iterations == 0 else min(info.iterations, iterations)
    return _to_numpy(best)


def reverse(
    stops,
    deltas,
    *,
    seconds: float | None = None,
    seed: int = 0,
    iterations: int | None = None,
    search_iterations: int | None = None,
    batch_size: int | None = None,
    options: SolverOptions | None = None,
    progress: bool | None = None,
    return_info: bool = False,
):
    """Find, for every target board, a start board that evolves into it in ``deltas`` steps.

    A gradient descent on a grid of logits per board runs through all ``delta`` steps at once:
    the logits (plus annealed noise) make a board of probabilities, :func:`probabilistic_step`
    carries it ``delta`` steps forward, and the loss is its squared difference from the target.
    Restarts run in parallel, rounds restart from fresh logits, and every few iterations each
    restart is hardened and checked with the exact :func:`step`; the best start board so far
    (fewest wrong cells after ``delta`` steps, then fewest live cells) is kept. It is then
    compared with trivial candidates (an all-dead board, the target itself, and the target
    without the cells that do not survive ``deltas`` steps of it) and the best is improved by
    :func:`local_search` (boards up to :data:`MAX_SEARCH_WIDTH` cells wide; wider ones skip it).

    Arguments:
        stops: 0/1 target boards, shape (B, H, W); any board size (a torus).
        deltas: integer steps in 1..5, shape (B,).
        seconds: bound on the wall time of the whole call, compilation included (kept to within
            about 20 %); the local search gets ``options.search_share`` of it, and whatever the
            descent leaves. Without it the call runs ``iterations`` descent iterations per
            board and ``search_iterations`` of local search, or :data:`DEFAULT_ITERATIONS` and
            :data:`DEFAULT_SEARCH_ITERATIONS` for those that are None as well.
        seed: seed of the random restarts and noise. With a fixed iteration count the result
            depends only on the boards, the seed and the options, not on the devices or
            ``batch_size``.
        iterations: descent iterations per board (rounded up to a multiple of
            ``options.check_every``); with ``seconds`` as well it is an upper limit.
        search_iterations: local-search iterations per board (0: no local search); with
            ``seconds`` as well it is an upper limit.
        batch_size: boards per jitted call (every call is padded to the same shape, a multiple
            of the device count, so each function compiles once); the default takes all boards
            of one delta at once. Large runs on a GPU use chunks of ~10^4 boards.
        options: :class:`SolverOptions`; the defaults are tuned on the Kaggle protocol.
        progress: show a tqdm progress bar (None: when tqdm is installed, stderr is a terminal
            and the run is long).
        return_info: also return a :class:`ReverseInfo`.

    Returns:
        The start boards, a uint8 array (B, H, W); with ``return_info`` a pair
        ``(boards, info)``.

    Raises:
        ValueError: for malformed ``stops``/``deltas``, a non-positive ``seconds``,
            ``iterations`` or ``batch_size``, or a negative ``search_iterations``.
    """
    started = time.perf_counter()
    stops, deltas = _check_inputs(stops, deltas)
    options = options or SolverOptions()
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be positive; got {seconds!r}.")
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be a positive integer; got {iterations!r}.")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if search_iterations is not None and search_iterations < 0:
        raise ValueError(
            f"search_iterations must be a non-negative integer; got {search_iterations!r}."
        )
    if iterations is None and seconds is None:
        iterations = DEFAULT_ITERATIONS
    if search_iterations is None and seconds is None:
        search_iterations = DEFAULT_SEARCH_ITERATIONS
    checks = math.inf if iterations is None else math.ceil(iterations / options.check_every)

    _, device_count = _board_sharding()
    groups = [np.nonzero(deltas == delta)[0] for delta in range(1, MAX_DELTA + 1)]
    # One padded shape for every call: a new shape would cost a compilation (seconds on a CPU).
    chunk = _balanced_chunk(max(len(g) for g in groups), batch_size, device_count)
    descent_seconds = None if seconds is None else seconds * (1 - options.search_share)
    clock = _Clock(descent_seconds, int(deltas.sum()))
    calls = sum(math.ceil(len(g) / chunk) for g in groups)
    bar = _progress_bar(progress, calls, seconds, checks)
    info = ReverseInfo()
    found = np.zeros_like(stops)
    key = jax.random.key(seed)
    for delta, group in enumerate(groups, start=1):
        for low in range(0, len(group), chunk):
            members = group[low : low + chunk]
            # Padding repeats the last board; its copies are dropped again.
            padded = np.concatenate([members, np.repeat(members[-1:], chunk - len(members))])
            boards = _descend(
                stops[padded],
                padded.astype(np.int32),
                delta,
                boards=len(members),
                key=key,
                checks=checks,
                clock=clock,
                options=options,
                info=info,
                bar=bar,
            )
            found[members] = boards[: len(members)]
    if bar is not None:
        bar.close()
    descent_errors = board_errors(found, stops, deltas)
    # Trivial candidates: an all-dead board, the target itself, and the target restricted to
    # the cells that ``deltas`` steps of it leave alive (still lifes and the like).
    stable = stops & np.asarray(evolve(stops, deltas))
    candidates = [found, np.zeros_like(stops), stops, stable]
    errors = np.stack([descent_errors] + [board_errors(c, stops, deltas) for c in candidates[1:]])
    pick = errors.argmin(axis=0)
    result = np.stack(candidates)[pick, np.arange(len(stops))]
    info.soft_errors = descent_errors
    info.candidate_errors = errors.min(axis=0)
    search_seconds = None if seconds is None else started + seconds - time.perf_counter()
    searchable = stops.shape[-1] <= MAX_SEARCH_WIDTH and search_iterations != 0
    if searchable and (search_seconds is None or search_seconds > 0):
        result, info.search_iterations = _local_search(
            result, stops, deltas, search_iterations, search_seconds, seed, batch_size, options
        )
    info.seconds = time.perf_counter() - started
    return (result, info) if return_info else result


def _progress_bar(progress, calls, seconds, checks):
    """A tqdm bar over descent checks (chunks x checks), or None (tqdm is optional)."""
    if progress is False:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    long_run = (seconds or 0) > 5 or (checks * calls > 20)
    if progress is None and not (long_run and sys.stderr.isatty()):
        return None
    return tqdm(total=None if math.isinf(checks) else calls * checks, desc="descent", leave=False)


# ------------------------------------------------------------------------------- command line


def _kaggle(args) -> None:
    _, stops, deltas = kaggle_boards(args.n, seed=args.seed)
    predicted, info = reverse(
        stops, deltas, seconds=args.seconds, seed=args.seed, progress=None, return_info=True
    )
    errors = board_errors(predicted, stops, deltas)
    print(
        f"{args.n} boards in {info.seconds:.1f} s ({info.iterations} descent iterations per "
        f"step back, {info.search_iterations} local-search iterations per board)"
    )
    print("descent alone (hardened candidates, no trivial boards, no local search):")
    print(format_table(score_table(info.soft_errors, deltas)))
    print("best of descent, all-dead and the target itself (before the local search):")
    print(format_table(score_table(info.candidate_errors, deltas)))
    print("result (after the local search):")
    print(format_table(score_table(errors, deltas)))
    print(f"all-dead baseline MAE {board_errors(np.zeros_like(stops), stops, deltas).mean():.4f}")


def text_board(text: str, *, height: int = 64, width: int = 96):
    """Render ``text`` with matplotlib into a 0/1 board of the given size (uint8)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    dpi = 10
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    # Letter height in pixels: most of the board's height, unless the word is too long for it.
    pixels_high = min(0.6 * height, 1.7 * width / max(len(text), 1))
    fig.text(
        0.5, 0.5, text, ha="center", va="center", fontsize=pixels_high * 72 / dpi, weight="bold"
    )
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., 0]
    plt.close(fig)
    board = (pixels[:height, :width] < 128).astype(np.uint8)
    return board


def _image(args) -> None:
    import matplotlib.pyplot as plt

    target = text_board(args.text)
    predicted, info = reverse(
        target[None], np.array([1]), seconds=args.seconds, seed=args.seed, return_info=True
    )
    forward = np.asarray(step(predicted[0]))
    wrong = forward != target
    print(f"{int(wrong.sum())} of {target.size} cells wrong after one step ({info.seconds:.1f} s)")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for ax, board, title in zip(
        axes,
        (target, predicted[0], forward),
        ("target", "predecessor", "one step later"),
        strict=True,
    ):
        ax.imshow(board, cmap="Greys", interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    rows, columns = np.nonzero(wrong)
    axes[2].scatter(columns, rows, s=12, facecolors="none", edgecolors="red")
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"saved {args.out}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    kaggle = commands.add_parser("kaggle", help="score on boards of the Kaggle protocol")
    kaggle.add_argument("--n", type=int, default=1000, help="number of boards")
    kaggle.add_argument("--seconds", type=float, default=300.0, help="time budget of reverse")
    kaggle.add_argument("--seed", type=int, default=0)
    image = commands.add_parser("image", help="reverse a rendered word one step")
    image.add_argument("--text", default="softflow")
    image.add_argument("--seconds", type=float, default=60.0)
    image.add_argument("--out", default="life_image.png", help="where to save the figure")
    image.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    {"kaggle": _kaggle, "image": _image}[args.command](args)


if __name__ == "__main__":
    main()
