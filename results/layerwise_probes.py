"""The layer-wise probes themselves: linear classifiers (multinomial logistic regression by L-BFGS) and ridge maps
fitted on one layer's feature matrices, scored on held-out rows. Pure functions of tensors; results/layerwise.py
feeds them each layer's features."""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn.functional as F


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """z-score every matrix with the train rows' per-column mean/std (constant columns keep std 1)."""
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return [(x - mean) / std for x in (train, *others)]


def label_ids(train_labels: Sequence[str], test_labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Class ids from the train labels; a test label never seen in training gets -1 (always counted wrong)."""
    classes = {label: i for i, label in enumerate(sorted(set(train_labels)))}
    y_train = torch.tensor([classes[label] for label in train_labels], dtype=torch.long)
    y_test = torch.tensor([classes.get(label, -1) for label in test_labels], dtype=torch.long)
    return y_train, y_test, len(classes)


@contextlib.contextmanager
def cpu_threads_for(x: torch.Tensor, num_classes: int):
    """One intra-op thread for small CPU fits: L-BFGS makes many tiny matmuls, and on a busy machine OpenMP
    threads waiting for each other made a 5k x 128 phone probe 20x slower (12 s vs 0.6 s, measured)."""
    small = x.device.type == "cpu" and x.numel() * num_classes < 50_000_000
    saved = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def fit_logistic_probe(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float = 1e-3, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression, full-batch L-BFGS from zeros (deterministic): mean cross-entropy +
    l2 * ||W||^2. x (N, D) standardised, y (N,) in [0, num_classes) -> W (D, C), b (C,)."""
    W = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [W, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ W + b, y) + l2 * W.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return W.detach(), b.detach()


def probe_accuracy(
    x_train: torch.Tensor,
    train_labels: Sequence[str],
    x_test: torch.Tensor,
    test_labels: Sequence[str],
    l2: float = 1e-3,
    max_iter: int = 100,
) -> float:
    """Test accuracy of a linear classifier trained on (x_train, train_labels); features standardised on train."""
    y_train, y_test, num_classes = label_ids(train_labels, test_labels)
    if num_classes < 2:
        raise ValueError(f"a probe needs at least 2 classes in its training labels, found {num_classes}")
    x_train, x_test = standardize(x_train.float(), x_test.float())  # float32: L-BFGS is several times faster
    with cpu_threads_for(x_train, num_classes):
        W, b = fit_logistic_probe(x_train, y_train.to(x_train.device), num_classes, l2, max_iter)
    predicted = (x_test @ W + b).argmax(1).cpu()
    return float((predicted == y_test).double().mean())


def fit_ridge(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ridge with intercept on standardised x: W = (X^T X + ridge * N * I)^-1 X^T (y - mean)."""
    y_mean = y.mean(0, keepdim=True)
    gram = x.T @ x + ridge * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    W = torch.linalg.solve(gram, x.T @ (y - y_mean))
    return W, y_mean[0]


def r2_score(y_true: torch.Tensor, y_pred: torch.Tensor) -> float:
    """Coefficient of determination per output column, averaged over columns with variance (uniform average)."""
    ss_res = (y_true - y_pred).pow(2).sum(0)
    ss_tot = (y_true - y_true.mean(0, keepdim=True)).pow(2).sum(0)
    keep = ss_tot > 1e-12
    if not bool(keep.any()):
        raise ValueError("R^2 is undefined: every target column is constant on the test rows")
    return float((1.0 - ss_res[keep] / ss_tot[keep]).mean())


def ridge_r2(
    x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, ridge: float = 1e-3
) -> float:
    """Held-out R^2 of a ridge map from features to targets (features standardised on train)."""
    x_train, x_test = standardize(x_train.double(), x_test.double())
    W, b = fit_ridge(x_train, y_train.double(), ridge)
    return r2_score(y_test.double(), x_test @ W + b)
