"""Orthonormal rotations that spread variance evenly over every channel, for PHI-S.

A normalised Hadamard matrix H (entries ±1/√n) turns any diagonal covariance Λ into one whose
diagonal is mean(Λ) everywhere. They exist for orders 1, 2 and (as far as anyone knows) every
multiple of 4; we build them by Sylvester doubling of Paley matrices, which covers the widths
vision models use (192, 384, 768, 1024, 1152, 1280, 1408, 1536, ...). For other widths,
`equalizing_rotation` falls back to the Givens sequence from the Schur-Horn theorem, which
reaches the same even diagonal for the given Λ.
"""

from __future__ import annotations

import numpy as np


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % d for d in range(2, int(q ** 0.5) + 1))


def _jacobsthal(q: int) -> np.ndarray:
    """Q[i, j] = χ(j - i), χ the quadratic character mod the prime q."""
    residues = {(x * x) % q for x in range(1, q)}
    chi = np.array([0] + [1 if a in residues else -1 for a in range(1, q)])
    idx = np.arange(q)
    return chi[(idx[None, :] - idx[:, None]) % q]


def _paley(order: int) -> np.ndarray | None:
    """A ±1 Hadamard matrix of this order from Paley I (q ≡ 3 mod 4) or II (q ≡ 1 mod 4), or None."""
    q = order - 1
    if _is_prime(q) and q % 4 == 3:
        conference = np.zeros((order, order), dtype=np.int64)
        conference[0, 1:], conference[1:, 0], conference[1:, 1:] = 1, -1, _jacobsthal(q)
        return conference + np.eye(order, dtype=np.int64)
    q = order // 2 - 1
    if order % 2 == 0 and _is_prime(q) and q % 4 == 1:
        conference = np.zeros((q + 1, q + 1), dtype=np.int64)
        conference[0, 1:], conference[1:, 0], conference[1:, 1:] = 1, 1, _jacobsthal(q)
        return np.kron(conference, [[1, 1], [1, -1]]) + np.kron(np.eye(q + 1, dtype=np.int64), [[1, -1], [-1, -1]])
    return None


def hadamard(n: int) -> np.ndarray | None:
    """A normalised (orthonormal) n×n Hadamard matrix, or None when no construction here covers n."""
    power = 1
    while n % power == 0:
        base = [[1]] if n // power == 1 else _paley(n // power)
        if base is not None:
            matrix = np.asarray(base, dtype=np.float64)
            while matrix.shape[0] < n:
                matrix = np.block([[matrix, matrix], [matrix, -matrix]])
            return matrix / np.sqrt(n)
        power *= 2
    return None


def _givens_equalizer(eigenvalues: np.ndarray) -> np.ndarray:
    """An orthogonal G with diag(G Λ Gᵀ) = mean(Λ): each rotation pins one channel to the mean."""
    n, target = len(eigenvalues), float(np.mean(eigenvalues))
    cov, rotation = np.diag(eigenvalues.astype(np.float64)), np.eye(n)
    free = list(range(n))
    while len(free) > 1:
        diag = cov[free, free]
        i, j = free[int(np.argmax(diag))], free[int(np.argmin(diag))]
        a, b, c = cov[i, i] - target, cov[j, j] - target, cov[i, j]
        if a <= 1e-12 * max(1.0, abs(target)):
            break  # every free channel is at the mean already
        # new cov[i, i] - target = (a + 2ct + bt²) / (1 + t²) with t = tan θ; a > 0 > b gives a real root
        t = (-c - np.sqrt(c * c - a * b)) / b
        cos, sin = 1 / np.sqrt(1 + t * t), t / np.sqrt(1 + t * t)
        for m in (cov, rotation):  # G = [[cos, sin], [-sin, cos]] on rows i, j: O(n) per rotation
            m[[i, j]] = np.stack([cos * m[i] + sin * m[j], cos * m[j] - sin * m[i]])
        cov[:, [i, j]] = np.stack([cos * cov[:, i] + sin * cov[:, j], cos * cov[:, j] - sin * cov[:, i]], axis=1)
        free.remove(i)
    return rotation


def equalizing_rotation(eigenvalues: np.ndarray) -> np.ndarray:
    """The rotation PHI-S applies after PCA: Hadamard where it exists, else the Givens equaliser."""
    matrix = hadamard(len(eigenvalues))
    return matrix if matrix is not None else _givens_equalizer(eigenvalues)
