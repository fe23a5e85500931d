"""Reverse Kaggle-protocol Game of Life boards on one accelerator; write the score as JSON.

Run from the repository root (tqdm is optional)::

    PYTHONPATH=src python benchmarks/life_gpu.py --boards 50000 --seconds 420 \\
        --out results.json

The boards are processed in chunks of at most ``--batch-size`` boards (sized for a large GPU;
the chunks are balanced and padded to one shape, so each jitted function compiles once). The
time budget covers the whole reversal, compilation included: the descent runs as many
iterations as fit into its share (``--search-share`` goes to the local search), and the local
search then runs until the budget is spent, so a faster device simply runs more iterations. The
JSON holds the score (mean absolute error and exact-solve rate) overall and per delta, for the
result, for the gradient descent alone, for the best of descent and trivial boards before the
local search, and for the all-dead baseline; the iteration counts, the throughput and the device.
"""

import argparse
import json
import os
import pathlib
import time

import jax
import numpy as np
from life_reverse import (
    SolverOptions,
    board_errors,
    format_table,
    kaggle_boards,
    reverse,
    score_table,
)


def run(
    boards: int,
    seconds: float,
    batch_size: int,
    seed: int,
    restarts: int,
    search_share: float = SolverOptions.search_share,
) -> dict:
    """Generate ``boards`` instances, reverse them within ``seconds`` and return the report."""
    _, stops, deltas = kaggle_boards(boards, seed=seed)
    options = SolverOptions(restarts=restarts, search_share=search_share)
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    found, info = reverse(
        stops,
        deltas,
        seconds=seconds,
        seed=seed,
        batch_size=batch_size,
        options=options,
        return_info=True,
    )
    wall = time.perf_counter() - started
    errors = board_errors(found, stops, deltas)
    dead = board_errors(np.zeros_like(stops), stops, deltas)
    return {
        "boards": boards,
        "seed": seed,
        "seconds_budget": seconds,
        "seconds_wall": wall,
        "boards_per_second": boards / wall,
        "iterations_per_step_back": info.iterations,
        "search_iterations": info.search_iterations,
        "search_share": search_share,
        "batch_size": batch_size,
        "restarts": restarts,
        "device": str(jax.devices()[0].device_kind),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "device_count": jax.device_count(),
        "score": score_table(errors, deltas),
        "score_descent_only": score_table(info.soft_errors, deltas),
        "score_before_search": score_table(info.candidate_errors, deltas),
        "score_all_dead": score_table(dead, deltas),
    }


def main(
    *,
    boards: int = 50_000,
    seconds: float = 420.0,
    batch_size: int | None = 16_384,
    out: str = "life_gpu.json",
) -> None:
    """Command line; the keywords are the defaults (``life_cpu.py`` passes CPU-sized ones).

    ``batch_size=None`` reverses all boards in one batch.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=boards)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument(
        "--batch-size", type=int, default=batch_size, help="boards per jitted call (default: all)"
    )
    parser.add_argument("--restarts", type=int, default=SolverOptions().restarts)
    parser.add_argument(
        "--search-share",
        type=float,
        default=SolverOptions.search_share,
        help="fraction of the budget reserved for the local search",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(out))
    args = parser.parse_args()
    report = run(
        args.boards,
        args.seconds,
        args.batch_size or args.boards,
        args.seed,
        args.restarts,
        args.search_share,
    )
    report["cpu_count"] = os.cpu_count()
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{args.boards} boards in {report['seconds_wall']:.1f} s on {report['device']}")
    print("result:")
    print(format_table(report["score"]))
    print("descent alone:")
    print(format_table(report["score_descent_only"]))
    print(f"{report['search_iterations']} local-search iterations per board")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
