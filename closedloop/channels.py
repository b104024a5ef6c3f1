"""Channel labels and types as streams and files carry them, matched to the names a pipeline uses.

One matcher (:func:`match`) serves the live source, replays and file reading, and every
channel list of ``[preprocess]`` and ``[features]``: exact first, then ignoring case,
then on normalised names — without a type prefix (``EEG O1``, ``EEG-O1``), a reference
suffix (``O1-REF``, ``O1-A1``, ``O1-AVG``...) and trailing dots (``Oz..``). A name that
fits several channels, or none, is a one-line error that lists what the stream has.

Channel types come from the stream (LSL ``desc/channels/channel/type``) or the file
(MNE), corrected by the labels where EDF files commonly mistype them: ``ECG ...``,
``EOG ...``, ``EMG ...`` and reference derivations (``A2-A1``, ``M1``). Only EEG channels
enter an average reference the pipeline does not spell out (:func:`average_reference`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = [
    "ChannelError",
    "check_labels",
    "normalise",
    "match",
    "channel_types",
    "canonical_type",
    "named_channels",
    "average_reference",
    "describe_excluded",
]


class ChannelError(ValueError):
    """Channels cannot be matched or labels cannot be used (the message is one line)."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PREFIX = re.compile(r"^(eeg|eog|ecg|ekg|emg)[\s_:-]+", re.IGNORECASE)
_SUFFIX = re.compile(r"[\s_]*-\s*(ref|le|re|avg|ar|a1|a2|m1|m2|cz|lm|rm)$", re.IGNORECASE)
_GENERIC = re.compile(r"^ch\d+$")


def _shown(names: Sequence[str], limit: int = 64) -> str:
    names = list(names)
    if len(names) <= limit:
        return repr(names)
    return repr(names[:limit])[:-1] + f", ... ({len(names) - limit} more)]"


def check_labels(labels: Sequence[str], where: str) -> None:
    """Refuse labels that cannot name channels: control characters, empty or duplicate labels.

    A stream with no labels at all is not refused here (its channels are
    called ``ch0``, ``ch1``...); pass ``[]`` for it.

    Raises
    ------
    ChannelError
        One line naming the channel(s) and what is wrong.
    """
    for i, lab in enumerate(labels):
        if _CONTROL.search(lab):
            raise ChannelError(
                f"{where}: the label of channel {i} ({lab!r}) contains a control character; "
                f"fix the stream's channel labels"
            )
    empty = [i for i, lab in enumerate(labels) if not lab.strip()]
    if empty:
        raise ChannelError(
            f"{where}: channel(s) {empty} have an empty label while the others are labelled; "
            f"label every channel (or none)"
        )
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        if lab in seen:
            raise ChannelError(f"{where}: label {lab!r} is used by channels {seen[lab]} and {i}; labels must be unique")
        seen[lab] = i


def normalise(name: str) -> str:
    """Return ``name`` without type prefix, reference suffix, trailing dots, spaces and case."""
    n = name.strip()
    n = _SUFFIX.sub("", _PREFIX.sub("", n)).rstrip(".")
    return "".join(n.split()).lower()


def match(
    wanted: Sequence[str],
    available: Sequence[str],
    key: str = "channels",
    where: str = "the stream",
    unlabeled: bool = False,
) -> list[int]:
    """Return the index in ``available`` of each ``wanted`` channel.

    Parameters
    ----------
    wanted : list of str
        Names the pipeline uses.
    available : list of str
        The stream's or file's channel labels (unique).
    key : str
        The pipeline key that names them (for messages), e.g. ``features.rois.occipital``.
    where : str
        What ``available`` belongs to (for messages).
    unlabeled : bool
        The stream declares no labels (``available`` are ``ch0``, ``ch1``...).

    Raises
    ------
    ChannelError
        One line: the names not found (or found several times) and every
        channel ``where`` has.
    """
    exact = {n: i for i, n in enumerate(available)}
    lower: dict[str, list[int]] = {}
    normal: dict[str, list[int]] = {}
    for i, n in enumerate(available):
        lower.setdefault(n.lower(), []).append(i)
        normal.setdefault(normalise(n), []).append(i)
    out: list[int] = []
    missing: list[str] = []
    for w in wanted:
        if w in exact:
            out.append(exact[w])
            continue
        for table, k in ((lower, w.lower()), (normal, normalise(w))):
            hits = table.get(k, [])
            if len(hits) == 1:
                out.append(hits[0])
                break
            if len(hits) > 1:
                raise ChannelError(
                    f"{key}: {w!r} could be any of {[available[i] for i in hits]} in {where}; name one exactly"
                )
        else:
            missing.append(w)
    if missing:
        if unlabeled:
            raise ChannelError(
                f"{key}: {where} declares no channel labels (its {len(available)} channels are called "
                f"ch0..ch{len(available) - 1}), so {missing} cannot be found; label the stream's channels "
                f"(desc/channels/channel/label)"
            )
        raise ChannelError(
            f"{key}: channel(s) {missing} not in {where}; it has {len(available)} channels: {_shown(available)}"
        )
    seen: dict[int, str] = {}
    for w, i in zip(wanted, out):
        if i in seen and seen[i] != w:
            raise ChannelError(f"{key}: {seen[i]!r} and {w!r} both name channel {available[i]!r} of {where}")
        seen[i] = w
    return out


# -- types --------------------------------------------------------------------------------
_TYPE_ALIASES = {
    "eeg": "EEG",
    "eog": "EOG",
    "ecg": "ECG",
    "ekg": "ECG",
    "emg": "EMG",
    "exg": "EXG",
    "misc": "MISC",
    "stim": "STIM",
    "trigger": "STIM",
    "trig": "STIM",
    "ref": "REF",
    "reference": "REF",
    "ref_meg": "MISC",
    "seeg": "SEEG",
    "ecog": "ECOG",
    "dbs": "DBS",
    "bio": "BIO",
    "resp": "RESP",
    "gsr": "GSR",
    "temperature": "TEMP",
    "aux": "AUX",
    "accelerometer": "ACC",
    "acc": "ACC",
}
# the first word of a label (digits dropped) that gives a channel's type away
_LABEL_WORD = {
    "ecg": "ECG",
    "ekg": "ECG",
    "eog": "EOG",
    "veog": "EOG",
    "heog": "EOG",
    "leog": "EOG",
    "reog": "EOG",
    "emg": "EMG",
}
# a reference electrode (A1, M2) or a derivation between two of them (A2-A1), after an "EEG " prefix
_REF_LABEL = re.compile(r"^(?:eeg[\s_:-]+)?(a1|a2|m1|m2|ref)(\s*-\s*(a1|a2|m1|m2|ref))?\.*$", re.IGNORECASE)


def canonical_type(declared: str | None) -> str:
    """Return a declared channel type in closedloop's spelling (``"eeg"`` -> ``"EEG"``; unknown: upper case)."""
    t = (declared or "").strip()
    return _TYPE_ALIASES.get(t.lower(), t.upper())


def channel_types(
    labels: Sequence[str], declared: Sequence[str] | None = None, stream_type: str | None = "EEG"
) -> list[str]:
    """Return each channel's type: as declared, corrected by its label where EEG is declared.

    Parameters
    ----------
    labels : list of str
        Channel labels.
    declared : list of str, optional
        Types as the stream or file declares them ("" where not declared).
    stream_type : str, optional
        The stream's type, used for channels that declare none (default EEG).

    Notes
    -----
    A channel declared EEG (or not declared) is typed from its label when the
    label says otherwise — ``ECG ECG``, ``EKG``, ``EOG left``, ``VEOG``,
    ``EMG1`` — or names a reference electrode or derivation (``A1``, ``M2``,
    ``EEG A2-A1``: type ``REF``). EDF files carry no types, so MNE reads all
    of these as EEG.
    """
    base = canonical_type(stream_type)
    if base not in _TYPE_ALIASES.values() or base in ("MISC", "STIM"):
        base = "EEG"
    n = len(labels)
    decl = list(declared) if declared is not None and len(declared) == n else [""] * n
    out = []
    for lab, d in zip(labels, decl):
        t = canonical_type(d) or base
        if t == "EEG":
            t = label_type(lab) or t
        out.append(t)
    return out


def label_type(label: str) -> str | None:
    """Return the type a label implies (``ECG``, ``EOG``, ``EMG``, ``REF``) or None."""
    lab = label.strip()
    word = re.split(r"[\s_:-]", lab, maxsplit=1)[0].lower().rstrip("0123456789")
    if word in _LABEL_WORD:
        return _LABEL_WORD[word]
    if _REF_LABEL.match(lab):
        return "REF"
    return None


# -- what a pipeline names --------------------------------------------------------------
def named_channels(features, preprocess) -> dict[str, list[str]]:
    """Return every channel list of a pipeline's ``[features]`` and ``[preprocess]``, by key.

    Keys are the pipeline keys (``preprocess.picks``, ``features.rois.occipital``...),
    so an error can name the one that does not fit.
    """
    out: dict[str, list[str]] = {}
    if preprocess is not None:
        if preprocess.picks is not None:
            out["preprocess.picks"] = list(preprocess.picks)
        if isinstance(preprocess.reference, list):
            out["preprocess.reference"] = list(preprocess.reference)
        for centre, nbrs in (preprocess.laplacian or {}).items():
            out[f"preprocess.laplacian.{centre}"] = [centre, *nbrs]
    if features is not None:
        if features.rois:
            for roi, members in features.rois.items():
                out[f"features.rois.{roi}"] = list(members)
        elif features.channels:
            out["features.channels"] = list(features.channels)
    return out


def average_reference(
    ch_names: Sequence[str], ch_types: Sequence[str], picks: Sequence[int] | None
) -> tuple[list[int], list[int]]:
    """Return (channels in the common average, channels left out of it), as indices.

    With explicit ``picks`` the average runs over exactly those channels (the
    pipeline named them); otherwise over the EEG channels only.
    """
    if picks is not None:
        return list(picks), []
    inside = [i for i, t in enumerate(ch_types) if t == "EEG"]
    outside = [i for i, t in enumerate(ch_types) if t != "EEG"]
    return inside, outside


def describe_excluded(ch_names: Sequence[str], ch_types: Sequence[str], excluded: Sequence[int]) -> str:
    """Return ``"'ECG ECG' (ECG), 'EEG A2-A1' (REF)"`` for channels left out of an average."""
    return ", ".join(f"{ch_names[i]!r} ({ch_types[i]})" for i in excluded)


def generic_names(n: int) -> list[str]:
    """Return the names of an unlabelled stream's channels: ``ch0``, ``ch1``..."""
    return [f"ch{i}" for i in range(n)]


def is_generic(names: Sequence[str]) -> bool:
    """Return whether ``names`` are the generic names of an unlabelled stream."""
    return bool(names) and all(_GENERIC.match(n) for n in names) and list(names) == generic_names(len(names))


def resolve_named(
    named: Mapping[str, Sequence[str]], available: Sequence[str], where: str, unlabeled: bool = False
) -> dict[str, list[int]]:
    """Match every list of :func:`named_channels` against ``available`` (first error raised)."""
    return {key: match(names, available, key, where, unlabeled) for key, names in named.items()}
