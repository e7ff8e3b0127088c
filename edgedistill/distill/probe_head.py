"""A new classifier started from a linear probe (LP-FT, Kumar et al. 2022): before the whole model is
fine-tuned, the head is fitted by L2-regularised logistic regression on the frozen model's features of
the training images. A randomly initialised head sends large, random gradients into the pretrained
backbone during the first steps and distorts its features; a head that already classifies keeps them.
That helps where the pretrained features suit the task. Where the task needs them to change, it can
cost accuracy: docs/benchmarks.md measures both heads (head_init_quality.py), and random stays the default.

The regression runs on standardised features (sklearn, its regularisation chosen by cross-validation
when every class has 3 images or more) and is folded back into the head's Linear layer.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..models.preprocess import eval_transform
from ..progress import console
from .finetune import LabelledSplit, _Labelled

C_GRID = (0.01, 0.1, 1.0, 10.0)


def probe_head(model: nn.Module, split: LabelledSplit, data_config: dict, device, autocast, batch_size: int,
               workers: int = 0) -> dict:
    """Set the timm model's classifier (a Linear over forward_head's pre-logits) to a logistic regression of the
    training images' features; returns the record. A model whose classifier is no such Linear keeps its head."""
    head = model.get_classifier()
    if not isinstance(head, nn.Linear) or head.out_features != len(split.classes):
        console.print("note: the classifier is not one Linear layer over the pooled features; it starts from timm's random init")
        return {"head_init": "random"}
    features, labels = _features(model, split, data_config, device, autocast, batch_size, workers)
    if features.shape[1] != head.in_features or len(set(labels.tolist())) < 2:
        return {"head_init": "random"}
    weight, bias, c = fit_logistic(features, labels, len(split.classes))
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(weight))
        head.bias.copy_(torch.from_numpy(bias))
    return {"head_init": "linear_probe", "probe_images": int(len(labels)), "probe_c": c}


@torch.no_grad()
def _features(model, split, data_config, device, autocast, batch_size, workers) -> tuple[np.ndarray, np.ndarray]:
    """The frozen model's pre-logits features of the readable training images, in eval mode and the eval transform."""
    was_training = model.training
    model.to(device).eval()
    loader = DataLoader(_Labelled(split, split.train, eval_transform(data_config), data_config["input_size"]),
                        batch_size=batch_size, num_workers=workers)
    features, labels = [], []
    for views, label in loader:
        keep = label >= 0
        if bool(keep.any()):
            with autocast:
                pooled = model.forward_head(model.forward_features(views[keep].to(device)), pre_logits=True)
            features.append(pooled.float().flatten(1).cpu().numpy())
            labels.append(label[keep].numpy())
    model.train(was_training)
    if not features:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(features), np.concatenate(labels)


def fit_logistic(features: np.ndarray, labels: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(weight [classes, D], bias [classes], the C chosen) of a multinomial logistic regression on standardised
    features, folded so that weight @ x + bias scores the raw features. A class with no image gets a row that never wins."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    mean, std = features.mean(0), features.std(0) + 1e-6
    scaled = (features - mean) / std
    folds = int(min(np.bincount(labels)[np.unique(labels)].min(), 5))
    if folds >= 3:
        with warnings.catch_warnings():  # sklearn 1.8 announces changes to its fitted attributes; C_ stays
            warnings.simplefilter("ignore", FutureWarning)
            fitted = LogisticRegressionCV(Cs=list(C_GRID), cv=folds, scoring="accuracy", max_iter=2000).fit(scaled, labels)
        c = float(np.ravel(fitted.C_)[0])
    else:  # too few images of some class to cross-validate: sklearn's default strength
        fitted, c = LogisticRegression(C=1.0, max_iter=2000).fit(scaled, labels), 1.0
    coef, intercept = fitted.coef_, fitted.intercept_
    if coef.shape[0] == 1:  # two classes: sklearn keeps one row (the second class's log-odds)
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((classes, features.shape[1]), np.float32)
    weight[fitted.classes_] = coef / std
    folded = intercept - (coef / std) @ mean
    bias = np.full(classes, folded.min() - 10.0, np.float32)  # a class whose training images are all unreadable: last
    bias[fitted.classes_] = folded
    return weight, bias, c
