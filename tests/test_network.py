"""The compiled form of the relaxed sorting networks: straight-line fused layers, bounded memory.

Structural checks of what XLA compiles (no timing): the bitonic network is unrolled into
elementwise kernels with no loop, gather or scatter, and the gradient through its permutation
does not keep one n x n matrix per layer.
"""

import re

import jax
import jax.numpy as jnp

import softflow as sf


def bitonic_depth(n):
    k = (n - 1).bit_length()
    return k * (k + 1) // 2


def compiled(fn, *shapes):
    args = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes]
    return jax.jit(fn).lower(*args).compile()


def test_bitonic_values_and_gradient_are_straight_line_fused_layers():
    n, batch = 64, 8
    layers = bitonic_depth(n)

    def loss(x, w):
        return jnp.sum(w * sf.sort(x, method="bitonic", softness=0.1))

    text = compiled(jax.value_and_grad(loss), (batch, n), (batch, n)).as_text()
    # Partners are lined up by reshapes: no loop over the layers, no gather of partners.
    for op in ("while", "gather", "scatter", "dynamic-slice", "dynamic-update-slice"):
        assert re.search(rf"\s{op}\(", text) is None, op
    kernels = len(re.findall(r"\sfusion\(", text))
    assert kernels <= 6 * layers, (kernels, layers)


def test_gradient_through_the_bitonic_permutation_keeps_less_than_a_matrix_per_layer():
    n, batch = 32, 4
    layers = bitonic_depth(n)

    def loss(x, v):
        return jnp.sum(v * sf.argsort(x, method="bitonic", softness=0.1))

    memory = compiled(jax.grad(loss), (batch, n), (batch, n, n)).memory_analysis()
    one_matrix = batch * n * n * 4
    # Until the last merge the permutation is block-diagonal: most layers work on a fraction of
    # it. Carrying the dense matrix through every layer would keep `layers` of them.
    assert memory.temp_size_in_bytes < layers * one_matrix, (
        memory.temp_size_in_bytes / one_matrix,
        layers,
    )
