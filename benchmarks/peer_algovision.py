"""The relaxed bubble sort written in AlgoVision (PyTorch), the peer of section "algovision".

AlgoVision relaxes ``a > b`` to ``sigmoid(beta * (a - b))``, runs both sides of an ``If`` and
blends the states by that probability, and turns a ``While`` into a mixture over the pass after
which it stops (cumulative halting: the probability of still running is the product of the
conditions seen so far; it stops once that probability is at most ``epsilon`` everywhere in the
batch). softflow's ``soft_while(..., tol=epsilon)`` with ``sf.greater(a, b, softness=1/beta)``
has the same semantics, which the benchmark checks by comparing outputs and gradients.
"""

import time

import numpy as np


def available() -> str | None:
    """None when AlgoVision and PyTorch import, else the reason they cannot be used."""
    try:
        import algovision  # noqa: F401
        import torch  # noqa: F401
    except ImportError as error:
        return f"AlgoVision/PyTorch not installed ({error.name}): pip install -e '.[bench]'"
    return None


def make_sort(beta: float, epsilon: float):
    """A batched AlgoVision ``Algorithm``: relaxed bubble sort of an input (B, n)."""
    import torch
    from algovision import (
        GT,
        Algorithm,
        For,
        If,
        Input,
        IsTrue,
        Let,
        LetInt,
        Output,
        Var,
        VarInt,
        While,
    )

    return Algorithm(
        Input("values"),
        Var("left", torch.tensor(0.0)),
        Var("right", torch.tensor(0.0)),
        Var("swapped", torch.tensor(1.0)),
        VarInt("remaining", lambda values: values.shape[1] - 1),
        VarInt("next_index", 0),
        While(
            IsTrue("swapped"),
            Let("swapped", 0),
            For(
                "index",
                "remaining",
                LetInt("next_index", lambda index: index + 1),
                Let("left", "values", ["index"]),
                Let("right", "values", ["next_index"]),
                If(
                    GT("left", "right"),
                    if_true=[
                        Let("values", ["index"], "right"),
                        Let("values", ["next_index"], "left"),
                        Let("swapped", 1.0),
                    ],
                ),
            ),
            LetInt("remaining", lambda remaining: remaining - 1),
        ),
        Output("values"),
        beta=beta,
        epsilon=epsilon,
    )


def forward_backward(sort, values: np.ndarray, weights: np.ndarray):
    """Run the sort forward and backward on float32 inputs.

    Returns:
        ``(call, sorted_values, gradient)``: a no-argument callable that repeats the work, and
        the outputs of one run as NumPy arrays (the gradient of sum(weights * sorted)).
    """
    import torch

    weights_t = torch.as_tensor(weights)

    def run():
        inputs = torch.as_tensor(values).clone().requires_grad_(True)
        output = sort(inputs)
        (output * weights_t).sum().backward()
        return output.detach(), inputs.grad

    output, gradient = run()
    return run, output.numpy(), gradient.numpy()


def torch_threads() -> int:
    """Threads PyTorch uses for its operations."""
    import torch

    return torch.get_num_threads()


def warm(call, seconds: float = 0.2) -> None:
    """Run ``call`` for a moment so that PyTorch's allocator and caches settle."""
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop:
        call()
