#!/usr/bin/env python3
"""scikit-learn's side of benches/heads.rs: the same cross-validated search on the same embeddings and folds.

    python3 benches/reference_heads.py DATA.npz     (arrays written by benches/heads.rs)

For each C of the grid: LogisticRegression(lbfgs, max_iter=100) on StandardScaler-ed features in each of the given
folds; the best mean accuracy picks C; then a fit on all training rows, scored on the test rows. Prints
{"seconds": ..., "accuracy": ..., "c": ...}. Needs: pip install numpy scikit-learn
"""
import json
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

warnings.filterwarnings("ignore", category=ConvergenceWarning)


def fit(x, y, c):
    scaler = StandardScaler().fit(x)
    return scaler, LogisticRegression(C=c, max_iter=100).fit(scaler.transform(x), y)


def main():
    d = np.load(sys.argv[1])
    x, y, folds, grid = d["x_train"], d["y_train"], d["folds"], d["grid"]
    started = time.perf_counter()
    scores = []
    for c in grid:
        accuracies = []
        for f in np.unique(folds):
            train, val = folds != f, folds == f
            scaler, model = fit(x[train], y[train], c)
            accuracies.append(model.score(scaler.transform(x[val]), y[val]))
        scores.append(np.mean(accuracies))
    best = grid[int(np.argmax(scores))]
    scaler, model = fit(x, y, best)
    seconds = time.perf_counter() - started
    accuracy = model.score(scaler.transform(d["x_test"]), d["y_test"])
    json.dump({"seconds": seconds, "accuracy": float(accuracy), "c": float(best)}, sys.stdout)


if __name__ == "__main__":
    main()
