"""The decision tree of the gallery, as a program: a depth-3 tree written with Python ``if``.

Shared by the pages ``learning/plot_decision_tree.py`` (the whole tree learned by gradient with
:func:`softflow.relax`) and ``algorithms/plot_which_gradient.py`` (the gradient estimators
compared on it), with the data preparation they share.
"""

import jax.numpy as jnp
import numpy as np
from sklearn.model_selection import train_test_split

NODES, LEAVES = 7, 8


def tree(x, params):
    """Class scores of one sample ``x`` (a vector of features)."""
    features, t, leaf = params["features"], params["thresholds"], params["leaves"]
    if x[jnp.argmax(features[0])] > t[0]:
        if x[jnp.argmax(features[2])] > t[2]:
            if x[jnp.argmax(features[6])] > t[6]:
                return leaf[7]
            else:
                return leaf[6]
        else:
            if x[jnp.argmax(features[5])] > t[5]:
                return leaf[5]
            else:
                return leaf[4]
    else:
        if x[jnp.argmax(features[1])] > t[1]:
            if x[jnp.argmax(features[4])] > t[4]:
                return leaf[3]
            else:
                return leaf[2]
        else:
            if x[jnp.argmax(features[3])] > t[3]:
                return leaf[1]
            else:
                return leaf[0]


def split(data, seed):
    """Standardised training and held-out parts, and the training mean and scale."""
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=seed, stratify=data.target
    )
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0)
    standard = [((x - mean) / scale).astype(np.float32) for x in (x_train, x_test)]
    return (standard[0], y_train), (standard[1], y_test), (mean, scale)
