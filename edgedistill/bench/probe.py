"""Task accuracy of an artifact's embeddings on labelled images: kNN and a linear probe.

Both are scored by stratified k-fold cross-validation over the labelled folder, so no separate
train/test split is needed and every image is scored once. The split is seeded: reruns and
different artifacts see the same folds, so their accuracies compare directly.

BLAS runs single-threaded here: the problems are tiny, and OpenBLAS's threaded dot products
inside L-BFGS spin-wait for each other, which on a loaded 2-core machine turned seconds into minutes.
"""

from __future__ import annotations

import numpy as np


def probe_accuracy(embeddings: np.ndarray, labels: np.ndarray, k: int = 5, folds: int = 5, seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    x = embeddings.reshape(len(embeddings), -1).astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    n_splits = max(2, min(folds, smallest))
    split = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    neighbours = max(1, min(k, len(labels) - len(labels) // n_splits - 1))
    knn = KNeighborsClassifier(n_neighbors=neighbours, metric="cosine")
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    with threadpool_limits(1):
        knn_top1 = float(cross_val_score(knn, x, labels, cv=split).mean())
        linear_top1 = float(cross_val_score(linear, x, labels, cv=split).mean())
    return {
        "knn_top1": round(knn_top1, 4),
        "linear_probe_top1": round(linear_top1, 4),
        "protocol": f"{n_splits}-fold stratified CV, kNN k={neighbours} cosine, logistic regression on standardised L2-normalised embeddings",
    }
