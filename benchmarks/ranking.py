"""Ranking supervision: learn to read multi-digit numbers from the order of n of them alone.

The standard benchmark of differentiable sorting: a small CNN maps the image of a number to a
scalar score; it never sees a number's value, only the true *order* of n numbers at a time. The
loss compares the soft permutation matrix P of the n scores (P[j, i] = weight of number i at
sorted position j) with the true permutation, entry by entry (binary cross-entropy, as diffsort
does). The numbers are made of scikit-learn's bundled 8×8 digits (``load_digits``, offline), four
digit images side by side; the digit images of the held-out sets are never seen in training.

::

    python benchmarks/ranking.py                 # full: n = 3, 5, 7, 9; writes results/ranking.json
    python benchmarks/ranking.py --steps 100 --sizes 3 --out /tmp/r.json --markdown /tmp/B.md

This module is also the shared task of both interpreters: every method trains the same model on
the same data with the same seeds and number of steps through :func:`train`, which takes the sort
as a function ``permutation(scores) -> P``. softjax needs Python >= 3.12, so its methods run in
``.venv-softjax`` (``--softjax``), from the digit pool this process saves (that interpreter needs
no scikit-learn).
"""

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import sorting

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SIZES = (3, 5, 7, 9)
DIGITS = 4
SEEDS = (0,)


@dataclasses.dataclass(frozen=True)
class Config:
    """What every method shares: numbers, optimisation and evaluation."""

    digits: int = DIGITS
    steps: int = 1500
    sets_per_step: int = 32
    learning_rate: float = 3e-3
    test_sets: int = 1000


# ---------------------------------------------------------------------------------------- data


def digit_pool(path: pathlib.Path | None = None) -> dict[str, np.ndarray]:
    """scikit-learn's 1797 8×8 digits in [0, 1], split into a training and a held-out pool.

    Arguments:
        path: an ``.npz`` saved by :func:`save_pool`; without it, scikit-learn loads the digits.
    """
    if path is not None:
        with np.load(path) as saved:
            return dict(saved)
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(0.7 * len(images))
    train, test = order[:cut], order[cut:]
    return {
        "train_images": images[train],
        "train_labels": digits.target[train].astype(np.int32),
        "test_images": images[test],
        "test_labels": digits.target[test].astype(np.int32),
    }


def save_pool(pool: dict[str, np.ndarray], path: pathlib.Path) -> None:
    """Save a pool for :func:`digit_pool` in another interpreter."""
    np.savez(path, **pool)


def numbers(key, images, labels, shape: tuple[int, ...], digits: int):
    """Random multi-digit numbers: their images (*shape, 8, 8·digits) and values (*shape,).

    Each digit is an image drawn uniformly from the pool; the number's image is the digit images
    side by side, most significant first.
    """
    index = jax.random.randint(key, (*shape, digits), 0, images.shape[0])
    picked = images[index]  # (*shape, digits, 8, 8)
    image = jnp.concatenate([picked[..., k, :, :] for k in range(digits)], axis=-1)
    powers = 10 ** jnp.arange(digits - 1, -1, -1)
    value = jnp.sum(labels[index] * powers, axis=-1)
    return image, value


def true_permutation(values):
    """The permutation matrix of ascending order: T[..., j, i] = 1 if value i is j-th smallest."""
    order = jnp.argsort(values, axis=-1, stable=True)
    return jax.nn.one_hot(order, values.shape[-1], dtype=jnp.float32)


# --------------------------------------------------------------------------------------- model


class Scorer(eqx.Module):
    """A small CNN: the image of a number (8, 8·digits) to one scalar score."""

    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    hidden: eqx.nn.Linear
    out: eqx.nn.Linear

    def __init__(self, digits: int, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        # Strided from the start: small enough that dozens of trainings fit in minutes on a CPU.
        self.conv1 = eqx.nn.Conv2d(1, 8, 3, stride=2, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(8, 16, 3, stride=2, padding=1, key=k2)
        self.hidden = eqx.nn.Linear(16 * 2 * 2 * digits, 32, key=k3)
        self.out = eqx.nn.Linear(32, 1, key=k4)

    def __call__(self, image):
        h = jax.nn.relu(self.conv1(image[None]))
        h = jax.nn.relu(self.conv2(h))
        h = jax.nn.relu(self.hidden(h.reshape(-1)))
        return self.out(h)[0]


def scores(model: Scorer, images):
    """The model's score of every image in a batch of any leading shape."""
    flat = images.reshape(-1, *images.shape[-2:])
    return jax.vmap(model)(flat).reshape(images.shape[:-2])


# ------------------------------------------------------------------------------------ training

#: The sort under test: scores (sets, n) -> soft permutation P (sets, n, n), P[s, j, i] = weight
#: of number i at sorted position j (ascending).
Permutation = Callable[[jax.Array], jax.Array]


def ranking_loss(model, permutation: Permutation, images, values):
    """Binary cross-entropy between the entries of P and those of the true permutation."""
    p = permutation(scores(model, images))
    target = true_permutation(values)
    p = jnp.clip(p, 1e-7, 1 - 1e-7)
    return -jnp.mean(target * jnp.log(p) + (1 - target) * jnp.log1p(-p))


def accuracy(model, images, values) -> tuple[float, float]:
    """(exact match, element-wise) accuracy of the hard ranking of the model's scores.

    A position counts as correct when the number the scores put there has the value that belongs
    there, so equal values in a set are never held against the model.
    """
    predicted = jnp.argsort(scores(model, images), axis=-1)
    placed = jnp.take_along_axis(values, predicted, axis=-1)
    correct = placed == jnp.sort(values, axis=-1)
    return float(jnp.mean(jnp.all(correct, axis=-1))), float(jnp.mean(correct))


def test_sets(pool, n: int, config: Config):
    """The held-out sets of one size: the same for every method and seed."""
    key = jax.random.key(10_000 + n)
    images, labels = jnp.asarray(pool["test_images"]), jnp.asarray(pool["test_labels"])
    return numbers(key, images, labels, (config.test_sets, n), config.digits)


def train(
    permutation: Permutation,
    pool,
    n: int,
    seed: int,
    config: Config,
    *,
    on_chunk: Callable[[int, Scorer], None] | None = None,
    chunk: int = 100,
) -> Scorer:
    """Train a fresh :class:`Scorer` on sets of ``n`` numbers through ``permutation``.

    The model's initialisation and the batches depend only on ``seed`` (and ``n``), never on the
    method, so every sort sees the same data in the same order.

    Arguments:
        permutation: the soft sort under test (see :data:`Permutation`).
        pool: the digit pool of :func:`digit_pool`.
        n: numbers per set.
        seed: the seed of the initialisation and of the batches.
        config: the shared settings.
        on_chunk: called as ``on_chunk(steps_done, model)`` after every ``chunk`` steps.
        chunk: steps run in one compiled scan.
    """
    init_key, data_key = jax.random.split(jax.random.key(seed))
    model = Scorer(config.digits, init_key)
    optimiser = optax.adam(config.learning_rate)
    opt_state = optimiser.init(eqx.filter(model, eqx.is_array))
    images, labels = jnp.asarray(pool["train_images"]), jnp.asarray(pool["train_labels"])

    def step(carry, index):
        model, opt_state = carry
        batch = numbers(
            jax.random.fold_in(data_key, index),
            images,
            labels,
            (config.sets_per_step, n),
            config.digits,
        )
        loss, grads = eqx.filter_value_and_grad(ranking_loss)(model, permutation, *batch)
        updates, opt_state = optimiser.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return (eqx.apply_updates(model, updates), opt_state), loss

    @eqx.filter_jit
    def run_chunk(model, opt_state, start):
        (model, opt_state), losses = jax.lax.scan(
            step, (model, opt_state), start + jnp.arange(chunk)
        )
        return model, opt_state, losses

    done = 0
    while done < config.steps:
        model, opt_state, _ = run_chunk(model, opt_state, jnp.int32(done))
        done += chunk
        if on_chunk is not None:
            on_chunk(done, model)
    return model


def evaluate(methods: dict[str, Permutation], pool, sizes, config: Config) -> list[dict]:
    """Train every method at every size and seed; one record per (method, n, seed)."""
    records = []
    for n in sizes:
        test_images, test_values = test_sets(pool, n, config)
        for name, permutation in methods.items():
            for seed in SEEDS:
                tick = time.perf_counter()
                model = train(permutation, pool, n, seed, config)
                exact, elementwise = accuracy(model, test_images, test_values)
                seconds = time.perf_counter() - tick
                print(
                    f"[ranking] n={n} {name} seed={seed}: exact {exact:.3f}, "
                    f"element-wise {elementwise:.3f} ({seconds:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                records.append(
                    {
                        "method": name,
                        "n": n,
                        "seed": seed,
                        "exact": exact,
                        "elementwise": elementwise,
                        "seconds": seconds,
                    }
                )
    return records


# ------------------------------------------------------------------------------------- methods

#: softflow's configurations: name -> options of ``sf.sort``.
SOFTFLOW = {
    "softflow odd_even logistic": {"method": "odd_even", "kind": "logistic", "softness": 0.1},
    "softflow odd_even cauchy": {"method": "odd_even", "kind": "cauchy", "softness": 0.1},
    "softflow bitonic logistic": {"method": "bitonic", "kind": "logistic", "softness": 0.1},
    "softflow softsort": {"method": "softsort", "softness": 0.1},
    "softflow neuralsort": {"method": "neuralsort", "softness": 0.1},
}
#: softjax's methods of ``sj.argsort``, each at softjax's default softness and options.
SOFTJAX = ("sorting_network", "softsort", "neuralsort")


def softflow_methods() -> dict[str, Permutation]:
    """softflow's sort, through ``sf.sort(..., return_permutation=True)``."""
    import softflow as sf

    def make(options):
        return lambda s: sf.sort(s, axis=-1, return_permutation=True, **options)[1]

    return {name: make(options) for name, options in SOFTFLOW.items()}


def softjax_methods() -> dict[str, Permutation]:
    """softjax's ``argsort`` (P[..., j, i] as softflow's)."""
    import softjax as sj

    def make(method):
        return lambda s: sj.argsort(s, axis=-1, method=method)

    return {f"softjax {method}": make(method) for method in SOFTJAX}


# ---------------------------------------------------------------------------------------- main


def start_softjax(pool, sizes, config: Config, folder: pathlib.Path):
    """Start softjax's methods in .venv-softjax; the process, or why it could not start.

    It runs beside this process's own trainings (each uses about one core).
    """
    python = ROOT / ".venv-softjax" / "bin" / "python"
    if not python.exists():
        return (
            "there is no .venv-softjax (softjax needs Python >= 3.12; `make bench-env` makes it "
            "when a python3.12 is on the PATH or in pyenv)"
        )
    import softflow

    source = pathlib.Path(softflow.__file__).resolve().parent.parent
    environment = dict(os.environ, PYTHONPATH=f"{source}{os.pathsep}{HERE}")
    path = folder / "pool.npz"
    save_pool(pool, path)
    command = [
        str(python),
        str(HERE / "ranking.py"),
        "--softjax",
        "--pool",
        str(path),
        "--steps",
        str(config.steps),
        "--sizes",
        *map(str, sizes),
    ]
    try:
        return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
    except OSError as error:
        return f"the softjax run could not start: {error}"


def finish_softjax(process, timeout: float) -> list[dict] | str:
    """The records of the softjax process, or why there are none."""
    if isinstance(process, str):
        return process
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return f"the softjax run took more than {timeout:.0f} s"
    if process.returncode:
        return f"the softjax run failed (exit {process.returncode})"
    return json.loads(output.strip().splitlines()[-1])


def section(records: list[dict], sizes, config: Config, skipped: str | None) -> dict:
    """The result section: one row per method, exact / element-wise accuracy per n."""
    import harness

    sec = harness.section(
        "Ranking supervision on multi-digit numbers",
        f"A CNN (two convolutions, two dense layers) scores images of {config.digits}-digit "
        f"numbers made of scikit-learn's 8×8 digits; it learns only from the true order of n "
        f"numbers at a time, through the soft permutation P of its scores (binary "
        f"cross-entropy between P and the true permutation matrix). Every method: the same "
        f"initialisation, batches ({config.sets_per_step} sets of n per step) and "
        f"{config.steps} Adam steps (learning rate {config.learning_rate:g}), seeds "
        f"{', '.join(map(str, SEEDS))}. Held-out: {config.test_sets} sets per n made of digit "
        "images never seen in training. Each cell: exact match (the whole ranking right) / "
        "element-wise (each position right). softflow: `sf.sort(scores, method=…, kind=…, "
        "softness=0.1, return_permutation=True)` (softsort and neuralsort: logistic); softjax: "
        "`sj.argsort(scores, method=…)` with its defaults (softness 0.1 on standardised, squashed "
        "scores).",
        ["method", *(f"n = {n}" for n in sizes)],
    )
    methods = list(dict.fromkeys(r["method"] for r in records))
    table = {}
    for record in records:
        table.setdefault((record["method"], record["n"]), []).append(record)

    def cell(method, n):
        rows = table.get((method, n))
        if not rows:
            return None
        exact = np.mean([r["exact"] for r in rows])
        element = np.mean([r["elementwise"] for r in rows])
        return f"{exact:.3f} / {element:.3f}"

    for method in methods:
        sec["rows"].append([method, *(cell(method, n) for n in sizes)])
    softjax = [m for m in methods if m.startswith("softjax")]
    ours = [m for m in methods if m.startswith("softflow")]
    for n in sizes:

        def best(names, n=n):
            values = [
                np.mean([r["exact"] for r in table[(m, n)]]) for m in names if (m, n) in table
            ]
            return max(values) if values else None

        mine, theirs = best(ours), best(softjax)
        if mine is not None and theirs is not None:
            harness.goal(
                sec,
                f"best softjax / best softflow exact-match accuracy ≤ 1, n = {n} (softflow "
                f"{mine:.3f}, softjax {theirs:.3f})",
                float(theirs / max(mine, 1e-9)),
                1.0,
            )
    if skipped:
        sec["notes"].append(f"softjax skipped: {skipped}.")
    sec["notes"].append(
        f"Each cell is {len(SEEDS)} training run(s) evaluated on {config.test_sets} sets: the "
        f"sampling error of an exact-match accuracy near 0.5 alone is about "
        f"{np.sqrt(0.25 / config.test_sets):.3f}, and the training seed adds its own spread, so "
        "differences of a few hundredths between methods are within the noise of this run."
    )
    sec["notes"].append(
        "Nothing was tuned per method: softflow at softness 0.1 on the raw scores (the CNN "
        "learns their scale), softjax at its own defaults, one learning rate for all. Both "
        "libraries' sorting networks blend the same comparators; softflow's odd-even network "
        "(n layers) and bitonic network (any n, no padding) differ from softjax's bitonic "
        "network, which pads to a power of two and standardises and squashes the scores first. "
        "softsort and neuralsort are the same formulas in both libraries, softflow's on the raw "
        "scores, softjax's on standardised, squashed ones."
    )
    sec["notes"].append(
        "For scale only (a different data set and training budget): softjax reports exact-match "
        "accuracies of .931 / .826 / .695 / .588 at n = 3 / 5 / 7 / 9 for softsort on four-digit "
        "MNIST numbers. The 8×8 digits here are coarser and the CPU budget is minutes, not hours."
    )
    return sec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--steps", type=int, default=Config.steps)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "ranking.json")
    parser.add_argument("--markdown", type=pathlib.Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--softjax", action="store_true", help="(internal) the softjax half")
    parser.add_argument("--pool", type=pathlib.Path, help="(internal) the saved digit pool")
    parser.add_argument(
        "--again", action="store_true", help="remake the section of --out from its records"
    )
    args = parser.parse_args()
    config = Config(steps=args.steps)
    if args.again:
        data = json.loads(args.out.read_text())
        sizes = sorted({r["n"] for r in data["records"]})
        data["sections"] = [section(data["records"], sizes, config, data.get("skipped"))]
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        sorting.render_markdown(args.markdown)
        return
    if args.softjax:
        pool = digit_pool(args.pool)
        print(json.dumps(evaluate(softjax_methods(), pool, args.sizes, config)))
        return
    started = time.perf_counter()
    pool = digit_pool()
    with tempfile.TemporaryDirectory() as folder:
        process = start_softjax(pool, args.sizes, config, pathlib.Path(folder))
        records = evaluate(softflow_methods(), pool, args.sizes, config)
        peer = finish_softjax(process, timeout=3600)
    skipped = peer if isinstance(peer, str) else None
    records += [] if skipped else peer
    import harness

    meta = harness.machine_info()
    meta.update(
        mode="full",
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        seconds=time.perf_counter() - started,
        samples="one training run per method, n and seed",
    )
    data = {
        "meta": meta,
        "sections": [section(records, args.sizes, config, skipped)],
        "records": records,
        "skipped": skipped,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    sorting.render_markdown(args.markdown)
    print(f"[ranking] wrote {args.out} and {args.markdown}", file=sys.stderr)


if __name__ == "__main__":
    main()
