"""One sparse spatial matrix for picks, re-referencing, Hjorth Laplacian and ROI averaging.

Every output signal is ``sum_k w[k] * x[idx[k]] - rowsum * r`` where ``r`` is
the reference signal (the mean of the reference channels, or 0): picks,
common average, chosen reference channels, Laplacians and weighted ROI means
all reduce to this form, so the kernel applies them in one pass per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpatialMap:
    """Sparse rows (CSR) over the stream's channels plus a reference.

    Attributes
    ----------
    names : list of str
        Output signal names.
    ptr, idx, weight : ndarray
        CSR layout: output ``o`` uses ``idx[ptr[o]:ptr[o+1]]`` with ``weight``.
    rowsum : ndarray
        Sum of each row's weights (the multiple of the reference subtracted).
    ref_idx : ndarray of intp
        Stream channels averaged into the reference (empty: no reference).
    """

    names: list[str]
    ptr: np.ndarray
    idx: np.ndarray
    weight: np.ndarray
    rowsum: np.ndarray
    ref_idx: np.ndarray

    def dense(self, n_in: int) -> np.ndarray:
        """The equivalent dense matrix ``(n_out, n_in)`` including the reference (for tests)."""
        m = np.zeros((len(self.names), n_in))
        for o in range(len(self.names)):
            for k in range(self.ptr[o], self.ptr[o + 1]):
                m[o, self.idx[k]] += self.weight[k]
            if self.ref_idx.size:
                m[o, self.ref_idx] -= self.rowsum[o] / self.ref_idx.size
        return m


def _need(names: list[str], avail: list[str], what: str) -> None:
    missing = [n for n in names if n not in avail]
    if missing:
        raise ValueError(f"{what}: channels {missing} not among {avail}")


def build_spatial_map(
    ch_names: list[str],
    signals: dict[str, dict[str, float]],
    picks: list[str] | None = None,
    reference: str | list[str] = "none",
    laplacian: dict[str, list[str]] | None = None,
) -> SpatialMap:
    """Compose picks, reference, Laplacian and the signal definitions into one map.

    Parameters
    ----------
    ch_names : list of str
        Channels of the incoming stream.
    signals : dict of str -> dict of str -> float
        Output signal -> {picked channel: weight}; ``{"O1": {"O1": 1.0}}`` is a
        plain channel, equal weights summing to 1 an ROI mean.
    picks : list of str, optional
        Channels kept (default all); the common average runs over them.
    reference : "none", "average" or list of str
        Re-reference applied before the Laplacian and the signals.
    laplacian : dict of str -> list of str, optional
        Hjorth: channel ``c`` becomes ``c - mean(neighbours)``.
    """
    picks = list(ch_names) if picks is None else list(picks)
    _need(picks, ch_names, "picks")
    pos = {n: i for i, n in enumerate(ch_names)}
    n_p = len(picks)
    # channel-space matrix over the picks: identity, then the Laplacian rows
    lap = np.eye(n_p)
    for centre, nbrs in (laplacian or {}).items():
        _need([centre, *nbrs], picks, f"laplacian.{centre}")
        row = np.zeros(n_p)
        row[picks.index(centre)] = 1.0
        for nb in nbrs:
            row[picks.index(nb)] -= 1.0 / len(nbrs)
        lap[picks.index(centre)] = row
    rows = []
    for name, members in signals.items():
        _need(list(members), picks, f"signal {name}")
        sel = np.zeros(n_p)
        for ch, w in members.items():
            sel[picks.index(ch)] += w
        rows.append(sel @ lap)
    mat = np.array(rows).reshape(len(signals), n_p)
    if reference == "average":
        ref_idx = np.array([pos[p] for p in picks], dtype=np.intp)
    elif reference == "none":
        ref_idx = np.zeros(0, dtype=np.intp)
    else:
        _need(list(reference), ch_names, "reference")
        ref_idx = np.array([pos[p] for p in reference], dtype=np.intp)
    ptr, idx, weight = [0], [], []
    for o in range(mat.shape[0]):
        nz = np.flatnonzero(mat[o])
        idx.extend(pos[picks[j]] for j in nz)
        weight.extend(mat[o, nz])
        ptr.append(len(idx))
    # a Laplacian row sums to 0: then the reference cancels exactly, with no rounding left
    rowsum = mat.sum(axis=1)
    rowsum[np.abs(rowsum) < 1e-12] = 0.0
    return SpatialMap(
        names=list(signals),
        ptr=np.array(ptr, dtype=np.intp),
        idx=np.array(idx, dtype=np.intp),
        weight=np.array(weight, dtype=np.float64),
        rowsum=np.ascontiguousarray(rowsum, dtype=np.float64),
        ref_idx=ref_idx,
    )
