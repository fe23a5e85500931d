"""Tests of the Game of Life solver of the benchmarks (benchmarks/life_reverse.py).

Rules, reversal, local search, time bound, sharding.

Every reversal here uses the same options, 8 boards of 12 x 12 cells and boards of one delta per
call, so the descent and the local search compile once for the whole file (the chunk shapes
match), and the single-device run of the sharding test reuses them too.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import life_reverse as gol  # noqa: E402

OPTIONS = gol.SolverOptions(
    restarts=2, round_iterations=100, check_every=25, search_check_every=100
)
BOARDS, SIZE = 8, 12


def small_stops(seed: int, delta: int) -> np.ndarray:
    """``BOARDS`` non-empty boards of ``SIZE`` x ``SIZE`` cells reachable in ``delta`` steps."""
    starts, _, _ = gol.kaggle_boards(3 * BOARDS, seed=seed, size=SIZE)
    stops = np.asarray(gol.evolve(starts, np.full(len(starts), delta)))
    stops = stops[stops.reshape(len(stops), -1).any(axis=1)][:BOARDS]
    assert len(stops) == BOARDS
    return stops


def life_by_loops(board: np.ndarray) -> np.ndarray:
    """B3/S23 on a torus, cell by cell with modular indices (independent of the module)."""
    rows, columns = board.shape
    result = np.zeros_like(board)
    for r in range(rows):
        for c in range(columns):
            alive = sum(
                board[(r + dr) % rows, (c + dc) % columns]
                for dr in (-1, 0, 1)
                for dc in (-1, 0, 1)
                if (dr, dc) != (0, 0)
            )
            result[r, c] = 1 if alive == 3 or (board[r, c] and alive == 2) else 0
    return result


@pytest.fixture(scope="module")
def delta_one_boards():
    return small_stops(3, 1), np.ones(BOARDS, np.int32)


def test_step_matches_cell_by_cell_rule():
    rng = np.random.default_rng(0)
    boards = (rng.random((2, 3, 6, 9)) < 0.4).astype(np.uint8)
    expected = np.stack([[life_by_loops(b) for b in batch] for batch in boards])
    result = np.asarray(gol.step(boards))
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, expected)


def test_step_known_patterns():
    blinker = np.zeros((5, 5), np.int32)
    blinker[2, 1:4] = 1
    np.testing.assert_array_equal(np.asarray(gol.step(blinker)), blinker.T)
    # A glider crosses the wrapped edge and comes back to its start after 4 * size steps.
    glider = np.zeros((6, 6), np.int32)
    glider[0, 1] = glider[1, 2] = glider[2, 0] = glider[2, 1] = glider[2, 2] = 1
    board = glider
    for _ in range(24):
        board = gol.step(board)
    np.testing.assert_array_equal(np.asarray(board), glider)


def test_probabilistic_step_is_the_exact_step_on_binary_boards():
    rng = np.random.default_rng(1)
    boards = (rng.random((16, 12, 12)) < rng.random((16, 1, 1))).astype(np.float32)
    stepped = np.asarray(gol.probabilistic_step(boards))
    np.testing.assert_array_equal(stepped, np.asarray(gol.step(boards)))


def test_probabilistic_step_equals_enumeration_of_independent_cells():
    # On a 4 x 4 torus every cell has eight distinct neighbours: with independent cells the
    # probability that a cell lives one step later is the average of the exact step over all
    # 2^16 boards, each weighted by its probability.
    import jax

    with jax.enable_x64(True):
        p = np.random.default_rng(2).random((4, 4))
        bits = (np.arange(2**16)[:, None] >> np.arange(16)) & 1
        boards = bits.reshape(-1, 4, 4).astype(np.uint8)
        weights = np.prod(np.where(boards == 1, p, 1 - p), axis=(1, 2))
        expected = np.tensordot(weights, np.asarray(gol.step(boards), np.float64), axes=1)
        np.testing.assert_allclose(gol.probabilistic_step(p), expected, rtol=1e-12, atol=1e-14)


def test_probabilistic_step_gradient_matches_finite_differences():
    import jax

    with jax.enable_x64(True):
        board = np.random.default_rng(3).uniform(0.05, 0.95, (5, 6))
        target = np.random.default_rng(4).random((5, 6))

        @jax.jit
        def loss(b):
            return ((gol.probabilistic_step(b) - target) ** 2).sum()

        grad = np.asarray(jax.grad(loss)(board))
        steps = np.eye(board.size).reshape(board.size, *board.shape) * 1e-6
        differences = [(loss(board + d) - loss(board - d)) / 2e-6 for d in steps]
        np.testing.assert_allclose(grad.reshape(-1), differences, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("height", "width"), [(25, 25), (6, 9), (3, 32), (7, 1), (5, 2)])
def test_packed_step_matches_step(height, width):
    rng = np.random.default_rng(height * 100 + width)
    boards = (rng.random((4, height, width)) < rng.random((4, 1, 1))).astype(np.uint8)
    packed = gol._pack_rows(boards)
    np.testing.assert_array_equal(gol._unpack_rows(packed, width), boards)
    stepped = np.asarray(gol._packed_step(packed, width))
    np.testing.assert_array_equal(gol._unpack_rows(stepped, width), np.asarray(gol.step(boards)))


def test_kaggle_boards_follow_the_protocol():
    starts, stops, deltas = gol.kaggle_boards(40, seed=5)
    assert starts.shape == stops.shape == (40, 25, 25) and deltas.shape == (40,)
    assert set(np.unique(deltas)) <= {1, 2, 3, 4, 5}
    np.testing.assert_array_equal(np.asarray(gol.evolve(starts, deltas)), stops)
    assert stops.reshape(40, -1).any(axis=1).all()
    np.testing.assert_array_equal(gol.board_errors(starts, stops, deltas), 0.0)


def test_reverse_beats_all_dead_by_a_wide_margin(delta_one_boards):
    stops, deltas = delta_one_boards
    found, info = gol.reverse(
        stops,
        deltas,
        iterations=100,
        search_iterations=100,
        options=OPTIONS,
        progress=False,
        return_info=True,
    )
    assert found.dtype == np.uint8 and found.shape == stops.shape
    errors = gol.board_errors(found, stops, deltas)
    all_dead = gol.board_errors(np.zeros_like(stops), stops, deltas)
    assert errors.mean() < 0.3 * all_dead.mean()
    # The descent alone (without the trivial candidates and the local search) does the work.
    assert info.soft_errors.mean() < 0.3 * all_dead.mean()
    assert np.all(errors <= info.candidate_errors) and np.all(info.candidate_errors <= all_dead)
    assert info.iterations == 100 and len(info.loss) == len(info.noise) == 100
    assert info.search_iterations == 100
    # One round: the noise falls to 0 and the softness to its end value.
    assert info.noise[0] == OPTIONS.noise_start and info.noise[-1] == 0
    np.testing.assert_allclose(info.softness[-1], OPTIONS.softness_end, rtol=1e-6)


def test_multi_step_descent_alone_beats_all_dead():
    delta = 3
    stops = small_stops(8, delta)
    deltas = np.full(BOARDS, delta, np.int32)
    _, info = gol.reverse(
        stops,
        deltas,
        iterations=100,
        search_iterations=0,
        options=OPTIONS,
        progress=False,
        return_info=True,
    )
    all_dead = gol.board_errors(np.zeros_like(stops), stops, deltas)
    assert info.soft_errors.mean() < 0.7 * all_dead.mean()
    assert info.search_iterations == 0


def test_local_search_never_makes_a_board_worse():
    delta = 3
    stops = small_stops(5, delta)
    deltas = np.full(BOARDS, delta, np.int32)
    rng = np.random.default_rng(6)
    starts = (rng.random(stops.shape) < rng.random((BOARDS, 1, 1))).astype(np.uint8)
    # Two starts are true predecessors already (error 0): the search must keep them exact.
    starts[:2] = gol.kaggle_boards(3 * BOARDS, seed=5, size=SIZE)[0][:2]
    assert np.all(gol.board_errors(starts[:2], stops[:2], deltas[:2]) == 0)
    before = gol.board_errors(starts, stops, deltas)
    # A high temperature makes the walk itself accept many worsening moves.
    options = gol.SolverOptions(**{**vars(OPTIONS), "search_temperature": 3.0})
    found = gol.local_search(starts, stops, deltas, iterations=100, seed=1, options=options)
    after = gol.board_errors(found, stops, deltas)
    assert found.dtype == np.uint8 and found.shape == stops.shape
    assert np.all(after <= before)
    assert after.mean() < 0.8 * before.mean()


def test_reverse_respects_the_time_bound(delta_one_boards):
    stops, deltas = delta_one_boards
    # Same shapes and options as above, so the solver is compiled already; the bound is on the
    # whole call and the run must still get past its first check.
    seconds = 3.0
    started = time.perf_counter()
    _, info = gol.reverse(
        stops, deltas, seconds=seconds, options=OPTIONS, progress=False, return_info=True
    )
    elapsed = time.perf_counter() - started
    assert elapsed < 1.5 * seconds
    assert info.iterations >= OPTIONS.check_every
    assert info.search_iterations >= OPTIONS.search_check_every


SHARDED_RUN = """
import json, sys
import jax
import numpy as np
sys.path.insert(0, {tests!r})
import test_game_of_life as t
assert len(jax.devices()) == 4, jax.devices()
print(json.dumps(t.sharded_case().tolist()))
"""


def sharded_case() -> np.ndarray:
    """The reversal that the sharding test runs on one and on four devices."""
    stops = small_stops(11, 2)
    return gol.reverse(
        stops,
        np.full(BOARDS, 2, np.int32),
        # Two descent checks: the second passes the state the first returned (its optimiser
        # moments were once replicated, not split, and the compiled step refused them).
        iterations=50,
        search_iterations=100,
        seed=7,
        options=OPTIONS,
        progress=False,
    )


def test_reverse_on_four_devices_equals_one_device():
    code = SHARDED_RUN.format(tests=str(pathlib.Path(__file__).resolve().parent))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    sharded = np.array(json.loads(run.stdout.strip().splitlines()[-1]), np.uint8)
    np.testing.assert_array_equal(sharded, sharded_case())


@pytest.mark.parametrize(
    ("stops", "deltas", "match"),
    [
        (np.zeros((2, 5)), [1, 1], "stops"),
        (np.full((2, 5, 5), 2), [1, 1], "stops"),
        (np.zeros((2, 5, 5)), [1], "deltas"),
        (np.zeros((2, 5, 5)), [1, 6], "deltas"),
    ],
)
def test_reverse_rejects_bad_input(stops, deltas, match):
    with pytest.raises(ValueError, match=match):
        gol.reverse(stops, np.asarray(deltas), iterations=1)


def test_local_search_rejects_bad_input():
    wide = np.zeros((1, 4, gol.MAX_SEARCH_WIDTH + 1), np.uint8)
    with pytest.raises(ValueError, match="stops"):
        gol.local_search(wide, wide, np.array([1]), iterations=1)
    square = np.zeros((1, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="starts"):
        gol.local_search(square[:, :3], square, np.array([1]), iterations=1)
    with pytest.raises(ValueError, match="iterations"):
        gol.local_search(square, square, np.array([1]))
    with pytest.raises(ValueError, match="search_temperature"):
        gol.SolverOptions(search_temperature=-1.0)
    with pytest.raises(ValueError, match="search_share"):
        gol.SolverOptions(search_share=1.0)
    with pytest.raises(ValueError, match="search_pairs"):
        gol.SolverOptions(search_proposals=4, search_pairs=5)
    with pytest.raises(ValueError, match="multiple of check_every"):
        gol.SolverOptions(round_iterations=30, check_every=25)
