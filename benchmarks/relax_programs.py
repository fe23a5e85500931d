"""``sf.relax`` on typical numerical programs ported from public code (ported_programs.py): a
table of what runs and what is refused, and the cost of what runs.

The table checks, per program: the soft program runs, or is refused with a :class:`RelaxError`
that names the primitive, the user's line and a way out; ``mode="hard"`` returns exactly the
original (bit for bit, both jitted); the straight-through forward value is the original's; the
soft gradient is finite, not zero where something was relaxed, and equal to float64 central
differences of the soft program; ``jit`` and ``vmap`` of the soft program agree.

The benchmark measures, per program that runs, the soft forward + gradient against the original
forward (both jitted and vmapped over a batch, float32) and the compile time of the gradient.

::

    PYTHONPATH=src python benchmarks/relax_programs.py table
    PYTHONPATH=src python benchmarks/relax_programs.py bench \\
        --out benchmarks/results/relax_programs.json
"""

import argparse
import contextlib
import dataclasses
import functools
import inspect
import json
import pathlib
import re
import subprocess
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

import softflow as sf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import harness
from ported_programs import PROGRAMS, PROGRAMS_BY_NAME, Program

#: The finite-difference step of the float64 gradient check.
STEP = 1e-6
#: A softness at which every soft program must be its hard self (up to 1e-4).
TINY_SOFTNESS = 1e-5
_MESSAGE = re.compile(r"cannot relax `(?P<primitive>[^`]+)` at (?P<file>[^\s:]+):(?P<line>\d+)")


def arguments(p: Program, dtype, seed: int = 0) -> tuple:
    """The program's arguments from its seeded generator: floats in ``dtype``, integers int32."""
    raw = p.make_args(np.random.default_rng(seed))
    return tuple(
        jnp.asarray(a, dtype if np.issubdtype(np.asarray(a).dtype, np.floating) else jnp.int32)
        for a in raw
    )


def relaxed(p: Program, **options):
    """``sf.relax`` of the program with its softness and ``max_steps``."""
    return sf.relax(p.fn, softness=p.softness, max_steps=p.max_steps, **options)


def as_float(tree, dtype):
    return [jnp.asarray(leaf).astype(dtype) for leaf in jax.tree_util.tree_leaves(tree)]


@dataclasses.dataclass
class Refusal:
    """What a RelaxError says: the primitive, where, and whether it points at the program."""

    primitive: str | None
    location: str | None
    in_program: bool
    advice: bool
    message: str

    @property
    def complete(self) -> bool:
        return self.primitive is not None and self.in_program and self.advice


def read_refusal(p: Program, error: Exception) -> Refusal:
    """Parse a RelaxError's message; ``in_program``: its line is one of the program's lines
    (or of the helpers it calls in ported_programs.py)."""
    message = str(error)
    found = _MESSAGE.search(message)
    lines, first = inspect.getsourcelines(p.fn)
    source_file = inspect.getsourcefile(p.fn)
    in_program = False
    location = None
    if found:
        location = f"{pathlib.Path(found['file']).name}:{found['line']}"
        line = int(found["line"])
        same_file = pathlib.Path(found["file"]).resolve() == pathlib.Path(source_file).resolve()
        in_program = same_file and first <= line < first + len(lines)
    return Refusal(
        primitive=found["primitive"] if found else None,
        location=location,
        in_program=in_program,
        advice="Instead:" in message or "instead" in message.lower(),
        message=message,
    )


@dataclasses.dataclass
class Outcome:
    """The verdict on one program."""

    program: str
    family: str
    status: str  # runs | refused | crash | wrong
    reason: str = ""
    relaxed_ops: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    refusal: Refusal | None = None
    fd_error: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)


def _first_line(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text.splitlines()[0][:300]


def _compare_exact(p: Program, outcome: Outcome, original, hard, st) -> None:
    """Hard mode bit for bit the original (values and dtypes); the straight-through forward
    value the original's (as floats). A program in Python syntax runs eagerly as the original,
    so the compiled hard program may round differently: there, up to float rounding. The
    straight-through program is another program (relax evaluates nested jits equation by
    equation, with the soft parts beside), which XLA may round differently: a difference within
    4 ulp of the largest output is a note, not a failure."""
    o_leaves = [np.asarray(o) for o in jax.tree_util.tree_leaves(original)]
    h_leaves = [np.asarray(h) for h in jax.tree_util.tree_leaves(hard)]
    s_leaves = [np.asarray(s) for s in jax.tree_util.tree_leaves(st)]
    eps = max(float(np.finfo(o.dtype).eps) if o.dtype.kind == "f" else 0.0 for o in o_leaves)

    def same(o, other):
        if p.python_syntax:
            return np.allclose(o.astype(other.dtype), other, rtol=8 * eps, atol=8 * eps)
        return np.array_equal(o.astype(other.dtype), other, equal_nan=True)

    if jax.tree_util.tree_structure(original) != jax.tree_util.tree_structure(hard) or any(
        o.dtype != h.dtype or not same(o, h) for o, h in zip(o_leaves, h_leaves, strict=True)
    ):
        outcome.failures.append(f"hard mode differs from the original ({o_leaves[0].dtype})")
    differ = [(o, s) for o, s in zip(o_leaves, s_leaves, strict=True) if not same(o, s)]
    if not differ:
        return
    difference = max(np.max(np.abs(o.astype(np.float64) - s.astype(np.float64))) for o, s in differ)
    rounding = max(
        4 * float(np.spacing(np.max(np.abs(o), initial=0).astype(s.dtype))) for o, s in differ
    )
    if not p.python_syntax and difference <= rounding:
        outcome.notes.append(
            f"straight-through forward {difference:.2g} from the original under jit "
            f"({differ[0][0].dtype}: rounding, within 4 ulp of the largest output)"
        )
        return
    outcome.failures.append(
        f"straight-through forward differs from the original ({differ[0][0].dtype}, max |Δ| "
        f"{difference:.3g})"
    )


def _exact_forward(p: Program, outcome: Outcome) -> None:
    """The hard and straight-through checks again in float32 (the default dtype), all three
    in one compilation."""
    args = arguments(p, jnp.float32)
    hard_fn, st_fn = relaxed(p, mode="hard"), relaxed(p, mode="straight_through")
    if p.python_syntax:
        original = p.fn(*args)
        hard, st = jax.jit(lambda *a: (hard_fn(*a), st_fn(*a)))(*args)
    else:
        original, hard, st = jax.jit(lambda *a: (p.fn(*a), hard_fn(*a), st_fn(*a)))(*args)
    _compare_exact(p, outcome, original, hard, st)


def _leaves64(tree) -> list[np.ndarray]:
    return [np.asarray(leaf, np.float64) for leaf in jax.tree_util.tree_leaves(tree)]


def _gradients(p: Program, outcome: Outcome, seed: int = 0) -> None:
    """In float64, with the softness a traced argument (one compilation): the soft gradient is
    finite, not zero when something is relaxed, and equal to central differences along a random
    direction; ``vmap`` of the soft program equals its calls; at a tiny softness the soft
    program is the hard one."""
    with jax.enable_x64(True):
        args = arguments(p, jnp.float64, seed)
        out = jax.eval_shape(relaxed(p), *args)
        rng = np.random.default_rng(seed + 1)
        weights = [
            jnp.asarray(rng.normal(size=np.shape(o))) for o in jax.tree_util.tree_leaves(out)
        ]
        direction = [jnp.asarray(rng.normal(size=args[i].shape)) for i in p.diff]

        def with_diff(diff):
            full = list(args)
            for i, d in zip(p.diff, diff, strict=True):
                full[i] = d
            return full

        def loss(diff, softness):
            out = sf.relax(p.fn, softness=softness, max_steps=p.max_steps)(*with_diff(diff))
            leaves = as_float(out, jnp.float64)
            return sum(jnp.sum(w * leaf) for w, leaf in zip(weights, leaves, strict=True)), out

        @jax.jit
        def evaluate(diff, shifted, softness):
            (value, out), grads = jax.value_and_grad(loss, has_aux=True)(diff, softness)
            soft = sf.relax(p.fn, softness=softness, max_steps=p.max_steps)
            pairs = zip(with_diff(diff), with_diff(shifted), strict=True)
            batched = jax.vmap(soft)(*[jnp.stack(pair) for pair in pairs])
            full = with_diff(diff)
            original = None if p.python_syntax else p.fn(*full)
            hard = relaxed(p, mode="hard")(*full)
            st = relaxed(p, mode="straight_through")(*full)
            return value, out, grads, batched, (original, hard, st)

        diff = [args[i] for i in p.diff]
        up = [d + STEP * v for d, v in zip(diff, direction, strict=True)]
        down = [d - STEP * v for d, v in zip(diff, direction, strict=True)]
        tau = jnp.float64(p.softness)
        value, out, grads, batched, (original, hard, st) = evaluate(diff, up, tau)
        value_up, out_up, _, _, _ = evaluate(up, up, tau)
        value_down = evaluate(down, up, tau)[0]
        _, tiny, _, _, _ = evaluate(diff, up, jnp.float64(TINY_SOFTNESS))
        if p.python_syntax:
            original = p.fn(*args)
        _compare_exact(p, outcome, original, hard, st)

        for h, t in zip(_leaves64(hard), _leaves64(tiny), strict=True):
            if not np.allclose(h, t, rtol=1e-4, atol=1e-4, equal_nan=True):
                outcome.failures.append(
                    f"at softness {TINY_SOFTNESS:g} the soft program is not the hard one "
                    f"(max |Δ| {np.nanmax(np.abs(h - t)):.3g})"
                )
                break
        grads = [np.asarray(g) for g in grads]
        if not np.isfinite(float(value)) or not all(np.all(np.isfinite(o)) for o in _leaves64(out)):
            outcome.failures.append("soft forward not finite")
        if not all(np.all(np.isfinite(g)) for g in grads):
            outcome.failures.append("soft gradient not finite")
            return
        if outcome.relaxed_ops and not any(np.any(g != 0) for g in grads):
            outcome.failures.append("soft gradient is zero although the program was relaxed")
        analytic = float(
            sum(np.sum(g * np.asarray(v)) for g, v in zip(grads, direction, strict=True))
        )
        numeric = float(value_up - value_down) / (2 * STEP)
        outcome.fd_error = abs(analytic - numeric) / max(abs(numeric), abs(analytic), 1e-3)
        if outcome.fd_error > 1e-5:
            outcome.failures.append(
                f"soft gradient {analytic:.6g} vs central differences {numeric:.6g} along a random "
                "direction"
            )
        for index, expected in enumerate((out, out_up)):
            for e, b in zip(_leaves64(expected), _leaves64(batched), strict=True):
                b = b[index]
                if not np.allclose(e, b, rtol=1e-9, atol=1e-12, equal_nan=True):
                    difference = np.max(np.abs(e - b))
                    outcome.failures.append(
                        f"vmap differs from single calls (max |Δ| {difference:.3g})"
                    )
                    return


def check(p: Program, *, float32: bool = True, numeric: bool = True) -> Outcome:
    """Every check of the module docstring on one program: in float64 (one compilation), and
    with ``float32`` the exact forward checks in float32 too (a second one); without
    ``numeric`` only whether relax runs or refuses it (an abstract trace, nothing compiled)."""
    outcome = Outcome(p.name, p.family, "runs")
    try:
        explanation = relaxed(p).explain(*arguments(p, jnp.float32))
        outcome.relaxed_ops = len(explanation)
    except sf.RelaxError as error:
        outcome.refusal = read_refusal(p, error)
        outcome.status = "refused"
        outcome.reason = _first_line(error)
        if not outcome.refusal.complete:
            outcome.failures.append("refusal message lacks the primitive, the line or advice")
        return outcome
    except Exception as error:
        outcome.status = "crash"
        outcome.reason = _first_line(error)
        outcome.failures.append("".join(traceback.format_exception(error)[-3:]))
        return outcome
    parts = (_gradients, _exact_forward) if float32 else (_gradients,)
    for part in parts if numeric else ():
        try:
            part(p, outcome)
        except Exception as error:
            outcome.status = "crash"
            outcome.reason = f"{part.__name__.strip('_')}: {_first_line(error)}"
            return outcome
    if outcome.failures:
        outcome.status = "wrong"
        outcome.reason = "; ".join(outcome.failures)
    else:
        outcome.reason = "; ".join([f"{outcome.relaxed_ops} relaxed operations", *outcome.notes])
    return outcome


def table(outcomes: list[Outcome]) -> str:
    """The outcomes as a Markdown table."""
    lines = ["| program | family | status | reason |", "|---|---|---|---|"]
    for o in outcomes:
        reason = o.reason.replace("|", "\\|")
        lines.append(f"| {o.program} | {o.family} | {o.status} | {reason} |")
    counts = {
        s: sum(o.status == s for o in outcomes) for s in ("runs", "refused", "crash", "wrong")
    }
    lines.append("")
    lines.append(
        f"{counts['runs']} of {len(outcomes)} run in soft mode; "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if s != "runs")
        + f" (jax {jax.__version__})."
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ benchmark


def batched_arguments(p: Program, batch: int, dtype) -> tuple:
    """``batch`` argument sets of the program, stacked along a leading axis."""
    sets = [arguments(p, dtype, seed) for seed in range(batch)]
    return tuple(jnp.stack(column) for column in zip(*sets, strict=True))


def cost(p: Program, settings: harness.Settings, batch: int) -> dict:
    """Soft forward + gradient against the original forward (and the original's own forward +
    gradient, the floor of any gradient), with compile times."""
    args = batched_arguments(p, batch, jnp.float32)
    soft = jax.vmap(relaxed(p))
    # A program in Python syntax has no jitted original but its hard mode (the same program).
    plain = jax.vmap(relaxed(p, mode="hard") if p.python_syntax else p.fn)
    out = jax.eval_shape(soft, *args)
    rng = np.random.default_rng(1)
    weights = [
        jnp.asarray(rng.normal(size=np.shape(o)), jnp.float32)
        for o in jax.tree_util.tree_leaves(out)
    ]

    def loss_of(fn):
        def loss(*a):
            leaves = as_float(fn(*a), jnp.float32)
            return sum(jnp.sum(w * leaf) for w, leaf in zip(weights, leaves, strict=True))

        return jax.value_and_grad(loss, argnums=p.diff)

    original = harness.compile_jitted(plain, *args)
    forward = harness.compile_jitted(soft, *args)
    gradient = harness.compile_jitted(loss_of(soft), *args)
    calls = {"original": original.call, "soft": forward.call, "soft+grad": gradient.call}
    with contextlib.suppress(ValueError):  # JAX has no reverse mode through a while_loop
        calls["original+grad"] = harness.compile_jitted(loss_of(plain), *args).call
    samples = harness.paired_times(calls, settings)
    return {
        "original ms": harness.median(samples["original"]) * 1e3,
        "original fwd+grad / original": harness.paired_ratio(samples, "original+grad", "original")
        if "original+grad" in samples
        else None,
        "soft forward / original": harness.paired_ratio(samples, "soft", "original"),
        "soft fwd+grad / original": harness.paired_ratio(samples, "soft+grad", "original"),
        "compile original s": original.compile_seconds,
        "compile jit(grad(relax)) s": gradient.compile_seconds,
        "HLO while loops": gradient.ops.get("while", 0),
        "HLO sorts": gradient.ops.get("sort", 0),
        "HLO instructions": sum(gradient.ops.values()),
    }


def measure(settings: harness.Settings, names=None, batch: int | None = None) -> dict:
    """The benchmark section: per program that runs, cost ratios and compile times."""
    # The same batch for every program. The ratios depend on it: at 1024 most originals take
    # 0.03-0.3 ms and their data stays in cache; at 16384 the soft programs' larger
    # intermediates leave it first (bilinear_sample 93x at 1024, 265x at 16384).
    batch = batch or (8 if settings.tiny else 1024)
    columns = [
        "program",
        "original ms",
        "original fwd+grad / original",
        "soft forward / original",
        "soft fwd+grad / original",
        "compile original s",
        "compile jit(grad(relax)) s",
        "HLO while loops",
        "HLO sorts",
        "HLO instructions",
    ]
    sec = harness.section(
        "sf.relax on programs ported from public code: cost",
        "Each program of benchmarks/ported_programs.py that relax runs, vmapped over a batch of "
        f"{batch} argument sets, float32, jitted: the soft forward and the soft "
        "forward + gradient (of a weighted sum of the outputs in the differentiable arguments) "
        "against the original forward; 'original fwd+grad' is the plain JAX gradient of the "
        "original (zero where the program is piecewise constant), the floor of what any gradient "
        "costs; compile time of the soft gradient, tracing included.",
        columns,
    )
    ratios, over_own_gradient, originals = {}, {}, {}
    for p in PROGRAMS:
        if names and p.name not in names:
            continue
        tick = time.perf_counter()
        try:
            row = cost(p, settings, batch)
        except Exception as error:
            sec["notes"].append(f"{p.name}: not measured ({_first_line(error)})")
            print(f"[relax_programs] {p.name}: not measured", file=sys.stderr, flush=True)
            continue
        print(
            f"[relax_programs] {p.name}: {time.perf_counter() - tick:.0f} s, "
            f"soft fwd+grad / original {row['soft fwd+grad / original']:.1f}",
            file=sys.stderr,
            flush=True,
        )
        ratios[p.name] = row["soft fwd+grad / original"]
        originals[p.name] = row["original ms"]
        if row["original fwd+grad / original"]:
            over_own_gradient[p.name] = ratios[p.name] / row["original fwd+grad / original"]
        sec["rows"].append([p.name, *(row[c] for c in columns[1:])])
    if ratios:
        values = sorted(ratios.values())
        own = harness.median(sorted(over_own_gradient.values())) if over_own_gradient else None
        median_why = (
            f"against the plain JAX forward + gradient of the original (zero where it is "
            f"piecewise constant) the soft forward + gradient costs {own:.1f}x (median): what "
            "relaxing adds, every candidate of each relaxed integer evaluated and both branches "
            "of each relaxed condition run"
            if own is not None
            else ""
        )
        worst_why = (
            "the longest run above a threshold, jnp.maximum(best, run) in a scan over 16 "
            "samples, carries both integers as distributions over 0..16 and takes the maximum "
            "outcome by outcome (it took the maximum of their expected values, at 4x, which was "
            "wrong at every finite softness: 0.97 for 2.15 on six samples); "
            "a stack machine carries its program counter and stack pointer as distributions "
            "through every step, and each step runs every opcode's handler on every candidate "
            "state; a lookup at relaxed float-to-integer indices weighs five integers per "
            "coordinate at softness 0.1 in float32 (125 joint outcomes per corner of a trilinear "
            "lookup), summed over a small table's positions (a 4x4x4 grid) but read one by one "
            "from a larger one, at about 4 ns per gathered element on XLA:CPU, while the exact "
            "interpolation is continuous and needs no relaxation (keep its index exact with "
            "sf.exact); a rule-table Life step weighs the 18 joint outcomes of a cell and its "
            "neighbour count, twice"
        )
        harness.goal(
            sec,
            "soft forward + gradient / original forward, median",
            harness.median(values),
            4.0,
            median_why,
        )
        harness.goal(
            sec, "soft forward + gradient / original forward, worst", values[-1], 20.0, worst_why
        )
        worst = sorted(ratios, key=ratios.get, reverse=True)[:5]
        sec["notes"].append("worst: " + ", ".join(f"{n} {ratios[n]:.1f}x" for n in worst))
        fast = sorted(n for n, r in originals.items() if r < 0.05)
        if fast:
            sec["notes"].append(
                "originals that run a batch in under 50 µs are mostly call overhead, and their "
                "ratios move by up to 3x between runs: " + ", ".join(fast)
            )
    return sec


#: Python-syntax loops whose compile time is measured against their trip count: a controller
#: with soft branches (a scan), a sphere tracer with a soft break (a while loop with an exit),
#: a projectile with a soft return (a scan that stacks the returns), a payback period with a
#: soft break and an else clause (a scan that stacks the worlds at the break), a gambler's ruin
#: with a soft break on a state that starts as Python numbers (its first pass run as Python) and
#: a trajectory appended to a list (a scan that stacks the appended heights).
LOOP_PROGRAMS = (
    "pid_python_loop",
    "sphere_march",
    "projectile_landing",
    "payback_period",
    "gamblers_ruin",
    "bounce_trajectory",
)


def compile_loop_seconds(steps: int, name: str = LOOP_PROGRAMS[0]) -> float:
    """Seconds to trace and compile ``jit(grad(relax(program)))`` at ``steps`` steps."""
    p = PROGRAMS_BY_NAME[name]
    fn = sf.relax(functools.partial(p.fn, steps=steps), softness=p.softness)
    args = arguments(p, jnp.float32)

    def total(*a):  # (a trajectory's heights: their sum)
        return sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(fn(*a)))

    tick = time.perf_counter()
    jax.jit(jax.grad(total, argnums=p.diff)).lower(*args).compile()
    return time.perf_counter() - tick


def loop_compile(settings: harness.Settings, steps=(10, 30), timeout: float = 300) -> dict:
    """Compile time of the Python-syntax loops' gradients against their trip counts, each in a
    fresh process (so that no cache helps), cut at ``timeout`` seconds."""
    sec = harness.section(
        "sf.relax: compile time of a Python loop against its trip count",
        "`jax.jit(jax.grad(sf.relax(program)))` of ported_programs.py, traced and compiled in a "
        "fresh process, at each trip count: pid_python_loop (a Python `for` over the steps with "
        "`if / elif / else` saturation), sphere_march (a Python `for` with a `break` when the "
        "ray is close to a surface), projectile_landing (a Python `for` that returns where "
        "the ball is below the ground), payback_period (a Python `for` over the years with a "
        "`break` once paid back and an `else:` clause), gamblers_ruin (a Python `for` over the "
        "draws with a `break` once broke, the wealth starting as a Python number) and "
        "bounce_trajectory (a Python `for` that appends each height to a list); cut at "
        f"{timeout:g} s.",
        ["program", "steps", "compile s", "note"],
    )
    for name in LOOP_PROGRAMS[:1] if settings.tiny else LOOP_PROGRAMS:
        seconds = {}
        for n in steps[:1] if settings.tiny else steps:
            command = [sys.executable, __file__, "compile-loop", str(n), "--only", name]
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=timeout, check=True
                )
                seconds[n] = float(done.stdout.strip().splitlines()[-1])
                sec["rows"].append([name, n, seconds[n], ""])
            except subprocess.TimeoutExpired:
                sec["rows"].append([name, n, None, f"did not finish in {timeout:g} s"])
        if len(seconds) == len(steps) == 2:
            short, long = steps
            harness.goal(sec, f"{name}: compile at {long} steps (s)", seconds[long], 10.0)
            harness.goal(
                sec,
                f"{name}: compile at {long} / at {short} steps",
                seconds[long] / seconds[short],
                2.0,
            )
    return sec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["table", "bench", "compile-loop"])
    parser.add_argument("steps", nargs="?", type=int, help="compile-loop: the trip count")
    parser.add_argument("--only", nargs="+", default=None, help="program names")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--loop-timeout", type=float, default=300, help="seconds per compile")
    parser.add_argument("--no-loop", action="store_true", help="skip the loop compile section")
    args = parser.parse_args()
    if args.what == "compile-loop":
        print(compile_loop_seconds(args.steps, *(args.only or [])))
    elif args.what == "table":
        outcomes = []
        for p in PROGRAMS:
            if args.only and p.name not in args.only:
                continue
            tick, cpu = time.perf_counter(), time.process_time()
            o = check(p)
            outcomes.append(o)
            print(
                f"{p.name:24s} {o.status:8s} {time.perf_counter() - tick:5.1f}s "
                f"cpu {time.process_time() - cpu:5.1f}s  {o.reason[:150]}",
                file=sys.stderr,
                flush=True,
            )
        text = table(outcomes)
        print(text)
        if args.out:
            args.out.write_text(
                json.dumps([dataclasses.asdict(o) for o in outcomes], indent=1, default=str) + "\n"
            )
    else:
        settings = harness.TINY if args.tiny else harness.QUICK
        sections = [measure(settings, args.only)]
        if not args.only and not args.no_loop:
            sections.append(loop_compile(settings, timeout=args.loop_timeout))
        data = {"meta": harness.machine_info(), "sections": sections}
        print(json.dumps(sections, indent=1, default=str))
        if args.out:
            args.out.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
