"""Regenerates ANN-Benchmarks' random angular datasets exactly as its datasets.py does.

random_float(): sklearn.datasets.make_blobs(n_samples, n_features=n_dims, centers,
random_state=1), then sklearn.model_selection.train_test_split(X, test_size=0.1,
random_state=1); ground truth: the 100 nearest train vectors of each test vector by angular
distance, by brute force. Writes float32 train/test and int32 neighbours as .npy files to
<out>/<name>/. Usage: datasets.py OUT_DIR NAME...
"""
import os
import sys

import numpy as np
import sklearn.datasets
import sklearn.model_selection

DATASETS = {
    "random-xs-20-angular": (20, 10000, 100),
    "random-s-100-angular": (100, 100000, 1000),
}


def generate(out_dir, name):
    dims, samples, centers = DATASETS[name]
    d = os.path.join(out_dir, name)
    if os.path.exists(os.path.join(d, "neighbors.npy")):
        return
    os.makedirs(d, exist_ok=True)
    x, _ = sklearn.datasets.make_blobs(
        n_samples=samples, n_features=dims, centers=centers, random_state=1)
    train, test = sklearn.model_selection.train_test_split(x, test_size=0.1, random_state=1)
    tn = train / np.linalg.norm(train, axis=1, keepdims=True)
    qn = test / np.linalg.norm(test, axis=1, keepdims=True)
    neighbors = np.empty((len(test), 100), dtype=np.int32)
    for s in range(0, len(test), 500):
        sims = qn[s:s + 500] @ tn.T
        top = np.argpartition(-sims, 100, axis=1)[:, :100]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        neighbors[s:s + 500] = np.take_along_axis(top, order, axis=1)
    np.save(os.path.join(d, "train.npy"), train.astype(np.float32))
    np.save(os.path.join(d, "test.npy"), test.astype(np.float32))
    np.save(os.path.join(d, "neighbors.npy"), neighbors)


if __name__ == "__main__":
    for n in sys.argv[2:]:
        generate(sys.argv[1], n)
