"""Reference numbers from hnswlib on a dataset written by datasets.py.

Builds hnswlib (space='cosine', one thread) with the given M and ef_construction, then for
each ef measures recall@10 against the ground truth and single-thread QPS with queries one
at a time. Prints one JSON object. Usage: hnswlib_ref.py DIR M EF_CONSTRUCTION SEED EF...
"""
import json
import os
import sys
import time

import hnswlib
import numpy as np


def main():
    d, m, efc, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    efs = [int(e) for e in sys.argv[5:]]
    train = np.load(os.path.join(d, "train.npy"))
    test = np.load(os.path.join(d, "test.npy"))
    truth = np.load(os.path.join(d, "neighbors.npy"))[:, :10]
    index = hnswlib.Index(space="cosine", dim=train.shape[1])
    index.init_index(max_elements=len(train), M=m, ef_construction=efc, random_seed=seed)
    index.set_num_threads(1)
    t = time.perf_counter()
    index.add_items(train, np.arange(len(train)), num_threads=1)
    build = time.perf_counter() - t
    out = {"build_s": build, "inserts_per_s": len(train) / build, "runs": []}
    for ef in efs:
        index.set_ef(ef)
        found = 0
        t = time.perf_counter()
        results = []
        for q in test:
            labels, _ = index.knn_query(q, k=10, num_threads=1)
            results.append(labels[0])
        secs = time.perf_counter() - t
        for r, g in zip(results, truth):
            found += len(set(r.tolist()) & set(g.tolist()))
        out["runs"].append({"ef": ef, "recall": found / truth.size, "qps": len(test) / secs})
    print(json.dumps(out))


main()
