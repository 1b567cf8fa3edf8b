#!/usr/bin/env python3
"""What a Python user runs to audit labelled embeddings: scikit-learn's LogisticRegression, 5-fold out-of-fold
probabilities (cross_val_predict), then cleanlab.

    reference_audit.py labels EMBEDDINGS.npz LABELS.json    find_label_issues (confident learning, prune by noise
        rate), ranked by self-confidence: print {"ranked": [row, ...], "seconds": S}
    reference_audit.py datalab EMBEDDINGS.npz LABELS.json   Datalab's label, near_duplicate and outlier checks on the
        embeddings and those probabilities: print {"label_issues": N, "outliers": N,
        "near_duplicate_pairs": [[row, row], ...], "seconds": S}

LABELS.json: the (noisy) class index per row, in the .npz's row order. Seconds include cross_val_predict.
Needs: pip install "cleanlab[datalab]==2.9.0" "datasets==3.6.0" "pyarrow==20.0.0" scikit-learn numpy
"""
import json
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

mode = sys.argv[1]
embeddings = np.load(sys.argv[2])["embeddings"]
with open(sys.argv[3]) as f:
    labels = np.asarray(json.load(f))
started = time.perf_counter()
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
probabilities = cross_val_predict(model, embeddings, labels, cv=folds, method="predict_proba")
if mode == "labels":
    from cleanlab.filter import find_label_issues

    ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    answer = {"ranked": [int(i) for i in ranked]}
elif mode == "datalab":
    from cleanlab import Datalab

    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(
        features=embeddings,
        pred_probs=probabilities,
        issue_types={"label": {}, "near_duplicate": {}, "outlier": {}},
    )
    near = lab.get_issues("near_duplicate")
    pairs = sorted(
        {
            (min(row, int(other)), max(row, int(other)))
            for row, (flagged, others) in enumerate(zip(near["is_near_duplicate_issue"], near["near_duplicate_sets"]))
            if flagged
            for other in others
        }
    )
    answer = {
        "label_issues": int(lab.get_issues("label")["is_label_issue"].sum()),
        "outliers": int(lab.get_issues("outlier")["is_outlier_issue"].sum()),
        "near_duplicate_pairs": [list(p) for p in pairs],
    }
else:
    sys.exit(f"unknown mode {mode}: labels or datalab")
answer["seconds"] = time.perf_counter() - started
json.dump(answer, sys.stdout)
