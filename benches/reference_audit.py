#!/usr/bin/env python3
"""What a Python user runs to find label errors on embeddings: scikit-learn's LogisticRegression, 5-fold out-of-fold
probabilities (cross_val_predict), and cleanlab's find_label_issues (confident learning, prune by noise rate), ranked
by self-confidence.

    reference_audit.py EMBEDDINGS.npz LABELS.json   print {"ranked": [row, ...], "seconds": S}

LABELS.json: the (noisy) class index per row, in the .npz's row order.
Needs: pip install cleanlab==2.9.0 scikit-learn numpy
"""
import json
import sys
import time

import numpy as np
from cleanlab.filter import find_label_issues
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

embeddings = np.load(sys.argv[1])["embeddings"]
with open(sys.argv[2]) as f:
    labels = np.asarray(json.load(f))
started = time.perf_counter()
model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
probabilities = cross_val_predict(model, embeddings, labels, cv=folds, method="predict_proba")
ranked = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
seconds = time.perf_counter() - started
json.dump({"ranked": [int(i) for i in ranked], "seconds": seconds}, sys.stdout)
