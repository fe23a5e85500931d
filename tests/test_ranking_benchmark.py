"""Tests of the ranking-supervision task that both benchmark interpreters share."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("sklearn")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))

import ranking


@pytest.fixture(scope="module")
def pool():
    return ranking.digit_pool()


def test_pools_are_disjoint_and_complete(pool):
    from sklearn.datasets import load_digits

    digits = load_digits()
    train = {image.tobytes() for image in pool["train_images"]}
    test = {image.tobytes() for image in pool["test_images"]}
    assert len(pool["train_images"]) + len(pool["test_images"]) == len(digits.images)
    # The held-out sets never show a digit image of training (duplicates in the data set aside).
    all_images = (digits.images / 16.0).astype(np.float32)
    duplicated = len(all_images) - len({image.tobytes() for image in all_images})
    assert len(train & test) <= duplicated


def test_numbers_are_their_digits_side_by_side(pool):
    images, values = ranking.numbers(
        jax.random.key(3),
        jnp.asarray(pool["test_images"]),
        jnp.asarray(pool["test_labels"]),
        (5, 4),
        3,
    )
    assert images.shape == (5, 4, 8, 24)
    lookup = {
        image.tobytes(): int(label)
        for image, label in zip(pool["test_images"], pool["test_labels"], strict=True)
    }
    for image, value in zip(
        np.asarray(images).reshape(-1, 8, 24), np.asarray(values).ravel(), strict=True
    ):
        digits = [
            lookup[np.ascontiguousarray(image[:, 8 * k : 8 * k + 8]).tobytes()] for k in range(3)
        ]
        assert value == 100 * digits[0] + 10 * digits[1] + digits[2]


def test_true_permutation_sorts_and_accuracy_of_an_oracle():
    values = jnp.array([[30, 10, 20, 10], [4, 3, 2, 1]])
    target = ranking.true_permutation(values)
    np.testing.assert_array_equal(
        target @ values[..., None].astype(jnp.float32), jnp.sort(values)[..., None]
    )
    # A scorer that reads the value exactly ranks every set right, ties included; its negation
    # gets a set right only where the values are all equal.
    images = values.astype(jnp.float32)[..., None, None] * jnp.ones((1, 1))
    exact, element = ranking.accuracy(lambda image: image[0, 0], images, values)
    assert (exact, element) == (1.0, 1.0)
    exact, element = ranking.accuracy(lambda image: -image[0, 0], images, values)
    assert exact == 0.0
