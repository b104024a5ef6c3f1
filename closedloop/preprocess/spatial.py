"""One sparse spatial matrix for picks, re-referencing, Hjorth Laplacian and ROI averaging.

Every output signal is ``sum_k w[k] * x[idx[k]] - rowsum * r`` where ``r`` is
the reference signal (the mean of the reference channels, or 0): picks,
common average, chosen reference channels, Laplacians and weighted ROI means
all reduce to this form, so the kernel applies them in one pass per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from closedloop.channels import ChannelError, average_reference, channel_types, is_generic, match


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
    ref_excluded : ndarray of intp
        Channels an average reference left out because they are not EEG.
    """

    names: list[str]
    ptr: np.ndarray
    idx: np.ndarray
    weight: np.ndarray
    rowsum: np.ndarray
    ref_idx: np.ndarray
    ref_excluded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))

    def dense(self, n_in: int) -> np.ndarray:
        """Return the equivalent dense matrix ``(n_out, n_in)`` including the reference (for tests)."""
        m = np.zeros((len(self.names), n_in))
        for o in range(len(self.names)):
            for k in range(self.ptr[o], self.ptr[o + 1]):
                m[o, self.idx[k]] += self.weight[k]
            if self.ref_idx.size:
                m[o, self.ref_idx] -= self.rowsum[o] / self.ref_idx.size
        return m


def build_spatial_map(
    ch_names: list[str],
    signals: dict[str, dict[str, float]],
    picks: list[str] | None = None,
    reference: str | list[str] = "none",
    laplacian: dict[str, list[str]] | None = None,
    *,
    ch_types: list[str] | None = None,
    keys: dict[str, str] | None = None,
    where: str = "the stream",
) -> SpatialMap:
    """Compose picks, reference, Laplacian and the signal definitions into one map.

    Every channel name is matched to ``ch_names`` by :func:`closedloop.channels.match`
    (``O1`` finds ``EEG O1``), so live streams, files and replays agree.

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
        Re-reference applied before the Laplacian and the signals. Without
        ``picks``, ``"average"`` runs over the EEG channels only (see ``ch_types``).
    laplacian : dict of str -> list of str, optional
        Hjorth: channel ``c`` becomes ``c - mean(neighbours)``.
    ch_types : list of str, optional
        Channel types (``EEG``, ``ECG``, ``REF``...); default: inferred from
        the labels (:func:`closedloop.channels.channel_types`).
    keys : dict of str -> str, optional
        Signal name -> the pipeline key that defines it (for error messages).
    where : str
        What the channels belong to (for error messages).

    Raises
    ------
    closedloop.channels.ChannelError
        One line naming the key and the channels not found, and listing what
        the stream has.
    """
    names = list(ch_names)
    types = list(ch_types) if ch_types is not None else channel_types(names)
    unlabeled = is_generic(names)
    if picks is None:
        pick_idx = list(range(len(names)))
        among = where
    else:
        pick_idx = match(list(picks), names, "preprocess.picks", where, unlabeled)
        among = f"the picked channels of {where}"
    picked = [names[i] for i in pick_idx]
    n_p = len(pick_idx)

    def find(members: list[str], key: str) -> list[int]:
        return match(members, picked, key, among, unlabeled)

    # channel-space matrix over the picks: identity, then the Laplacian rows
    lap = np.eye(n_p)
    for centre, nbrs in (laplacian or {}).items():
        c, *nb = find([centre, *nbrs], f"preprocess.laplacian.{centre}")
        row = np.zeros(n_p)
        row[c] = 1.0
        for j in nb:
            row[j] -= 1.0 / len(nb)
        lap[c] = row
    rows = []
    for name, members in signals.items():
        sel = np.zeros(n_p)
        for j, w in zip(find(list(members), (keys or {}).get(name, f"signal {name}")), members.values()):
            sel[j] += w
        rows.append(sel @ lap)
    mat = np.array(rows).reshape(len(signals), n_p)
    excluded: list[int] = []
    if reference == "average":
        inside, excluded = average_reference(names, types, pick_idx if picks is not None else None)
        if not inside:
            raise ChannelError(
                f"preprocess.reference: 'average' needs EEG channels but {where} has none "
                f"(types {sorted(set(types))}); name the channels with preprocess.picks"
            )
        ref_idx = np.array(inside, dtype=np.intp)
    elif reference == "none":
        ref_idx = np.zeros(0, dtype=np.intp)
    else:
        ref_idx = np.array(match(list(reference), names, "preprocess.reference", where, unlabeled), dtype=np.intp)
    ptr, idx, weight = [0], [], []
    for o in range(mat.shape[0]):
        nz = np.flatnonzero(mat[o])
        idx.extend(pick_idx[j] for j in nz)
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
        ref_excluded=np.array(excluded, dtype=np.intp),
    )
