"""Soft sort: softflow's relaxed sorting networks against diffsort, torchsort and softjax.

::

    python benchmarks/sorting.py                  # n = 16, 128, 1024; writes results/sorting.json
    python benchmarks/sorting.py --sizes 16 --out /tmp/sorting.json --markdown /tmp/B.md
    python benchmarks/sorting.py --only softjax   # rerun one part, keep the other

Forward + gradient of a batch of 128 rows, float32, on JAX's default device (the CPU here; on a
machine with a GPU, JAX for CUDA and PyTorch for CUDA, the same command times both libraries on
the GPU: set ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` so that JAX leaves memory to PyTorch). Each
group of candidates is timed in one run, side by side (interleaved rounds, see ``harness.py``),
so the ratios are those of one run. diffsort and torchsort (PyTorch) run in this process;
softjax needs Python >= 3.12, so this same file runs again in ``.venv-softjax`` (``--softjax``),
where softflow is timed beside softjax and the ratios are taken there. A peer that is not
installed is skipped with a note.

The losses: ``sum(w * sorted)`` for the sorted values, ``sum(w * sorted) + sum(V * P)`` where the
soft permutation P is asked for too (the loss of ranking supervision goes through P).
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
import time

import harness
import jax
import jax.numpy as jnp
import numpy as np

import softflow as sf

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BATCH = 128
SOFTNESS = 0.1
SIZES = (16, 128, 1024)
#: Every method of softflow's sort; the first two are sorting networks (diffsort has the same).
METHODS = tuple(sf.SORTING_METHODS)
NETWORKS = ("odd_even", "bitonic")


def settings_for(n: int) -> harness.Settings:
    """Fewer rounds where one call of the slowest peer takes seconds."""
    if n <= 16:
        return harness.Settings(repeats=11, sample_seconds=0.1, quick=False)
    if n <= 128:
        return harness.Settings(repeats=3, sample_seconds=0.05, quick=False)
    return harness.Settings(repeats=3, sample_seconds=0.01, quick=False)


def problem(n: int):
    """Inputs and loss weights of one size: x (B, n), w (B, n), V (B, n, n); float32."""
    rng = np.random.default_rng(n)
    x = rng.normal(size=(BATCH, n)).astype(np.float32)
    w = rng.normal(size=(BATCH, n)).astype(np.float32)
    v = rng.normal(size=(BATCH, n, n)).astype(np.float32)
    return x, w, v


def with_permutation_fits(n: int, method: str) -> bool:
    """Whether the gradient through P fits in memory and in a few seconds a call.

    Odd-even transposition has n layers, and its loop keeps P for every one of them for the
    gradient (n (B, n, n) arrays); softjax's sorting network carries a dense P through its layers
    likewise.
    """
    return n <= 128 or method not in ("odd_even", "sorting_network")


# ---------------------------------------------------------------------------------- candidates


def softflow_candidate(n: int, method: str, permutation: bool):
    """Forward + gradient of softflow's sort, compiled (``harness.Compiled``)."""
    x, w, v = (jnp.asarray(a) for a in problem(n))

    def loss(x, w, v):
        if permutation:
            values, p = sf.sort(x, method=method, softness=SOFTNESS, return_permutation=True)
            return jnp.sum(w * values) + jnp.sum(v * p)
        return jnp.sum(w * sf.sort(x, method=method, softness=SOFTNESS))

    return harness.compile_jitted(jax.value_and_grad(loss), x, w, v)


def diffsort_candidate(n: int, method: str, permutation: bool):
    """diffsort's DiffSortNet (logistic, steepness 1/softness): forward + backward."""
    import diffsort
    import torch

    network = diffsort.DiffSortNet(
        method, n, steepness=1 / SOFTNESS, distribution="logistic", device=_torch_device()
    )
    x, w, v = (torch.as_tensor(a, device=_torch_device()) for a in problem(n))

    def run():
        inputs = x.clone().requires_grad_(True)
        values, p = network(inputs)
        loss = (w * values).sum() + ((v * p).sum() if permutation else 0.0)
        loss.backward()
        return inputs.grad.sum().item()  # waits for a GPU

    return run


def torchsort_candidate(n: int):
    """torchsort's ``soft_sort`` (values only): forward + backward."""
    import torch
    import torchsort

    x, w, _ = (torch.as_tensor(a, device=_torch_device()) for a in problem(n))

    def run():
        inputs = x.clone().requires_grad_(True)
        (w * torchsort.soft_sort(inputs, regularization_strength=SOFTNESS)).sum().backward()
        return inputs.grad.sum().item()  # waits for a GPU

    return run


def _torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def missing(module: str) -> str | None:
    """None when ``module`` imports, else why it does not."""
    try:
        __import__(module)
    except Exception as error:  # a broken install reads like a missing one
        return f"{module} is not installed here ({type(error).__name__}: {error})"
    return None


def _ms(seconds):
    return None if seconds is None else seconds * 1e3


# ------------------------------------------------------------------------------- PyTorch peers


def measure_pytorch_peers(sizes) -> dict:
    """softflow against diffsort and torchsort, in this process."""
    sec = harness.section(
        "Soft sort: softflow against diffsort and torchsort (PyTorch)",
        f"Forward + gradient of a batch of {BATCH} rows, float32, softness {SOFTNESS:g} "
        f"(diffsort: logistic, steepness {1 / SOFTNESS:g}; torchsort: regularization_strength "
        f"{SOFTNESS:g}). *values*: loss sum(w · sorted); *values + P*: loss sum(w · sorted) + "
        "sum(V · P). diffsort always computes P (it has no values-only path); its *values* row "
        "differentiates the values only. The ratio column is softflow's time over the row's, for "
        "the same network and the same loss (torchsort: against softflow's values), each group "
        "timed side by side in one run. PyTorch uses "
        f"{_torch_threads()} threads, JAX the CPU client's default.",
        ["n", "network", "candidate", "loss", "ms", "softflow / this"],
    )
    reasons = {name: missing(name) for name in ("diffsort", "torchsort")}
    goal_ratios = []
    for n in sizes:
        for method in NETWORKS:
            calls, rows = {}, []
            losses = [False, True] if with_permutation_fits(n, method) else [False]
            for permutation in losses:
                label = "values + P" if permutation else "values"
                calls[f"softflow {label}"] = softflow_candidate(n, method, permutation).call
                rows.append(("softflow", label, f"softflow {label}"))
                if reasons["diffsort"] is None and diffsort_fits(n, method, permutation):
                    calls[f"diffsort {label}"] = diffsort_candidate(n, method, permutation)
                    rows.append(("diffsort", label, f"diffsort {label}"))
            if reasons["torchsort"] is None and method == NETWORKS[-1]:
                calls["torchsort values"] = torchsort_candidate(n)
                rows.append(("torchsort soft_sort", "values", "torchsort values"))
            tick = time.perf_counter()
            samples = harness.paired_times(calls, settings_for(n))
            print(
                f"[sorting] n={n} {method}: {time.perf_counter() - tick:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            for library, label, key in rows:
                mine = f"softflow {label}"
                ratio = None if key == mine else harness.paired_ratio(samples, mine, key)
                if library == "diffsort":
                    goal_ratios.append((n, method, label, ratio))
                sec["rows"].append(
                    [n, method, library, label, _ms(harness.median(samples[key])), ratio]
                )
    for n, method, label, ratio in goal_ratios:
        harness.goal(
            sec,
            f"softflow ≤ 0.5 × diffsort, n = {n}, {method}, {label}",
            ratio,
            0.5,
            "",
        )
    sec["notes"].append(
        "diffsort applies each layer of the network as dense (n × n) matrix products, on the "
        "values and on P (B · n³ multiply-adds per layer); softflow lines up each element with "
        "its partner by a static reshape (B · n per layer for the values; P is built afterwards "
        "from the comparators' weights, block-diagonal until the last merge of bitonic sort)."
    )
    for name, reason in reasons.items():
        if reason is not None:
            sec["notes"].append(f"{name} skipped: {reason}.")
    skipped = [n for n in sizes if not with_permutation_fits(n, "odd_even")]
    if skipped:
        sec["notes"].append(
            f"n = {', '.join(map(str, skipped))}, odd_even: no *values + P* row. Its loop keeps P "
            f"for each of its n layers for the gradient ({BATCH}·n² floats = "
            f"{BATCH * max(skipped) ** 2 * 4 / 2**20:.0f} MiB each at n = {max(skipped)}), more "
            "memory than this machine has."
        )
    slow = [
        f"n = {n}, {m}"
        for n in sizes
        for m in NETWORKS
        for p in (False, True)
        if not diffsort_fits(n, m, p) and (with_permutation_fits(n, m) or not p)
    ]
    if slow and reasons["diffsort"] is None:
        sec["notes"].append(
            f"diffsort not timed at {'; '.join(sorted(set(slow)))}: every layer multiplies "
            "(B, n, n) arrays by dense (n, n) matrices, B · n³ multiply-adds, and keeps them for "
            "the backward pass. At n = 128 the odd-even network has 128 such layers (its "
            "values-only row above shows the cost before the backward pass through P); at "
            f"n = 1024 each layer is {BATCH * 1024**3 / 1e9:.0f} G multiply-adds and keeps "
            f"{BATCH * 1024**2 * 4 / 2**30:.1f} GiB, 55 layers for bitonic, 1024 for odd-even."
        )
    return sec


def diffsort_fits(n: int, method: str, permutation: bool) -> bool:
    """Whether diffsort's dense layers finish in seconds for this case (see the note)."""
    if n > 128:
        return False
    return not (n == 128 and method == "odd_even" and permutation)


def _torch_threads() -> int | str:
    try:
        import torch
    except ImportError:
        return "no"
    return torch.get_num_threads()


# ------------------------------------------------------------------------------ softjax (3.12)

SOFTJAX_METHODS = ("sorting_network", "softsort", "neuralsort")


def softjax_candidate(n: int, method: str, permutation: bool):
    """Forward + gradient of softjax's sort (values) or argsort (P), defaults, compiled."""
    import softjax as sj

    x, w, v = (jnp.asarray(a) for a in problem(n))

    def loss(x, w, v):
        if permutation:
            p = sj.argsort(x, axis=-1, softness=SOFTNESS, method=method)
            values = jnp.einsum("...ji,...i->...j", p, x)
            return jnp.sum(w * values) + jnp.sum(v * p)
        return jnp.sum(w * sj.sort(x, axis=-1, softness=SOFTNESS, method=method))

    return harness.compile_jitted(jax.value_and_grad(loss), x, w, v)


def measure_softjax(sizes) -> dict:
    """softflow against softjax, both in this (Python 3.12) process; a JSON-able dict."""
    import softjax

    rows, fastest = [], []
    for n in sizes:
        for permutation in (False, True):
            label = "values + P" if permutation else "values"
            calls = {}
            for method in METHODS:
                # The bitonic P at n > 128 compiles for minutes on two busy cores: it is timed in
                # the PyTorch section only.
                slow = permutation and method == "bitonic" and n > 128
                if not slow and (not permutation or with_permutation_fits(n, method)):
                    calls[f"softflow {method}"] = softflow_candidate(n, method, permutation).call
            theirs = [m for m in SOFTJAX_METHODS if not permutation or with_permutation_fits(n, m)]
            for method in theirs:
                calls[f"softjax {method}"] = softjax_candidate(n, method, permutation).call
            tick = time.perf_counter()
            samples = harness.paired_times(calls, settings_for(n))
            print(
                f"[sorting/softjax] n={n} {label}: {time.perf_counter() - tick:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            for key in calls:
                rows.append(
                    {
                        "n": n,
                        "loss": label,
                        "candidate": key,
                        "seconds": harness.median(samples[key]),
                        "over_softjax": {
                            other: harness.paired_ratio(samples, key, f"softjax {other}")
                            if other in theirs
                            else None
                            for other in SOFTJAX_METHODS
                        },
                    }
                )
            # The fastest of each library in every round, then the median of their ratio.
            ours = [samples[k] for k in calls if k.startswith("softflow")]
            peers = [samples[k] for k in calls if k.startswith("softjax")]
            rounds = zip(zip(*ours, strict=True), zip(*peers, strict=True), strict=True)
            per_round = [min(a) / min(b) for a, b in rounds]
            fastest.append({"n": n, "loss": label, "ratio": harness.median(per_round)})
    return {
        "softjax_version": softjax.__version__,
        "jax_version": jax.__version__,
        "python": sys.version.split()[0],
        "device": str(jax.devices()[0]),
        "rows": rows,
        "fastest": fastest,
    }


def softjax_section(sizes, timeout: float) -> dict:
    """Run the softjax half in .venv-softjax and make its result section."""
    title = "Soft sort: softflow against softjax"
    python = ROOT / ".venv-softjax" / "bin" / "python"
    if not python.exists():
        return harness.skipped(
            title,
            "there is no .venv-softjax (softjax needs Python >= 3.12; `make bench-env` makes it "
            "when a python3.12 is on the PATH or in pyenv).",
        )
    source = pathlib.Path(sf.__file__).resolve().parent.parent
    environment = dict(os.environ, PYTHONPATH=f"{source}{os.pathsep}{HERE}")
    command = [str(python), str(HERE / "sorting.py"), "--softjax", "--sizes", *map(str, sizes)]
    try:
        result = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
            timeout=timeout,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as error:
        return harness.skipped(title, f"the softjax run failed: {error}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    sec = harness.section(
        title,
        f"softjax {data['softjax_version']} (`sj.sort` for the values, `sj.argsort` for P, "
        f"with its default options: inputs standardised and squashed, mode smooth) against "
        f"softflow, forward + gradient of a batch of {BATCH} rows at softness {SOFTNESS:g}, "
        f"timed side by side in one process under Python {data['python']} and JAX "
        f"{data['jax_version']}. softjax's sorting network is bitonic (padded to a power of "
        "two); softsort and neuralsort build dense n × n matrices. The ratio columns are the "
        "row's time over each softjax method's, in the same run.",
        [
            "n",
            "loss",
            "candidate",
            "ms",
            *(f"/ softjax {m}" for m in SOFTJAX_METHODS),
        ],
    )
    for row in data["rows"]:
        sec["rows"].append(
            [
                row["n"],
                row["loss"],
                row["candidate"],
                _ms(row["seconds"]),
                *(row["over_softjax"][m] for m in SOFTJAX_METHODS),
            ]
        )
        if row["candidate"] == "softflow bitonic" and row["loss"] == "values":
            harness.goal(
                sec,
                f"values: softflow bitonic ≤ 1 × softjax sorting_network (bitonic), n = {row['n']}",
                row["over_softjax"]["sorting_network"],
                1.0,
                "",
            )
    for best in data["fastest"]:
        if best["loss"] == "values + P":
            harness.goal(
                sec,
                f"values + P: fastest softflow method ≤ 1 × fastest softjax method, "
                f"n = {best['n']} (the fastest of each library in each round)",
                best["ratio"],
                1.0,
                "",
            )
    sec["notes"].append(
        "softflow's sorting networks line up each wire with its partner by a static reshape and "
        "unroll bitonic sort's layers (odd-even transposition runs its n layers in a loop); "
        "softjax's gathers each wire's partner with a static index. softsort and neuralsort are "
        "the same formulas in both libraries (softjax first standardises and squashes x, "
        "softflow uses x as it is: both the values and P differ between the libraries)."
    )
    sec["notes"].append(
        "At n = 16 one call takes a fraction of a millisecond, a few dozen small kernels: when "
        "other work competes for the cores, the ratios at small n move a lot with the machine's "
        "load (see the load average above) from one run to the next."
    )
    sec["notes"].append(
        "Not timed with P: odd-even at n > 128 (its loop keeps P for each of its n layers for "
        "the gradient) and softjax's sorting network at n > 128 (it carries a dense P through "
        "its 55 layers: 55 × 0.5 GiB at n = 1024). softflow's bitonic P at n > 128 is timed in "
        "the PyTorch section only (its gradient compiles for minutes here); at n = 1024, batch "
        "128, it needs 7.6 GiB (XLA's memory analysis): its permutation is built block-diagonal "
        "until the last merge, and large blocks are recomputed in the backward pass."
    )
    return sec


# ---------------------------------------------------------------------------------------- main


def render_markdown(path: pathlib.Path) -> None:
    """Re-render BENCHMARKS.md from every JSON in results/ (cpu.json is the main part)."""
    import render

    cpu = RESULTS / "cpu.json"
    if cpu.exists():
        path.write_text(render.render(json.loads(cpu.read_text())))


def machine() -> dict:
    """The machine table, with the versions of the sort peers."""
    meta = harness.machine_info()
    for name in ("diffsort", "torchsort"):
        try:
            meta["versions"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            meta["versions"][name] = None
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS / "sorting.json")
    parser.add_argument("--markdown", type=pathlib.Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("pytorch", "softjax"),
        default=["pytorch", "softjax"],
        help="rerun these parts; the others keep their sections of --out",
    )
    parser.add_argument("--softjax", action="store_true", help="(internal) the softjax half")
    args = parser.parse_args()
    if args.softjax:
        print(json.dumps(measure_softjax(args.sizes)))
        return
    started = time.perf_counter()
    parts = {
        "pytorch": lambda: measure_pytorch_peers(args.sizes),
        "softjax": lambda: softjax_section(args.sizes, timeout=1200),
    }
    previous = json.loads(args.out.read_text()) if args.out.exists() else None
    if previous is not None and len(args.only) < len(parts):
        # Rerun some parts only: the others keep their sections from the previous run.
        sections = [
            parts[name]() if name in args.only else old
            for name, old in zip(parts, previous["sections"], strict=True)
        ]
    else:
        sections = [run() for run in parts.values()]
    meta = machine()
    meta.update(
        mode="full",
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        seconds=time.perf_counter() - started,
        samples="interleaved rounds: 11 at n = 16, 3 at n = 128 and 1024",
    )
    if len(args.only) < len(parts):
        meta["mode"] = f"full; rerun of the {' and '.join(args.only)} part"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "sections": sections}, indent=1) + "\n")
    render_markdown(args.markdown)
    print(f"[sorting] wrote {args.out} and {args.markdown}", file=sys.stderr)


if __name__ == "__main__":
    main()
