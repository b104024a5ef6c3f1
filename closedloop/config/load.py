"""Read a pipeline file, apply dotted overrides, validate it and resolve its device profile.

Every problem is reported at once: pydantic's, section by section, and those
of :mod:`closedloop.config.validate` for every check whose sections parsed.
Each names the dotted key and what is allowed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from closedloop.config.base import error_lines, unknown_key
from closedloop.config.pipeline import PipelineConfig, ResolvedPipeline
from closedloop.config.profile import DeviceProfile, find_profile, load_profile, packaged_folder
from closedloop.config.validate import check_sections


class PipelineError(ValueError):
    """A pipeline file is invalid. The message lists every problem with its key."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        if len(problems) == 1:
            super().__init__(f"invalid pipeline {path}: {problems[0]}")
        else:
            super().__init__(f"invalid pipeline {path}:\n" + "\n".join(f"  - {p}" for p in problems))


def find_pipeline(name_or_path: str | Path) -> Path:
    """Return the pipeline file a path or a bare name means.

    A path that exists is used as given; a bare name (``alpha_tacs``, no
    folder) that is not a file here is looked up among the pipelines shipped
    with closedloop.

    Raises
    ------
    PipelineError
        If neither exists (naming the shipped pipelines).
    """
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = packaged_folder("pipelines")
    if p.parent == Path(".") and shipped is not None:
        cand = shipped / (p.name if p.suffix == ".toml" else f"{p.name}.toml")
        if cand.is_file():
            return cand
    names = sorted(f.stem for f in shipped.glob("*.toml")) if shipped is not None else []
    hint = f"; shipped pipelines (use the bare name): {', '.join(names)}" if names else ""
    raise PipelineError(str(p), [f"file not found: {p}{hint}"])


def parse_value(text: str) -> Any:
    """Parse the value of ``KEY=VALUE`` as a TOML value; a bare word that is not one is a string.

    ``"1.5"`` → 1.5, ``"true"`` → True, ``"[1, 2]"`` → [1, 2], ``"'x'"`` → "x", ``"lsl"`` → "lsl".
    """
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["controller.lower=1.2", ...]`` into ``{"controller.lower": 1.2}``.

    Raises
    ------
    ValueError
        For an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. controller.lower=1.2")
        out[key] = parse_value(value.strip())
    return out


def _apply(raw: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    problems = []
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for i, p in enumerate(parents):
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                problems.append(f"{'.'.join(parents[: i + 1])}: is a value, not a section; cannot set {dotted}")
                break
            node = child
        else:
            node[leaf] = value
    return problems


def _sections(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate each section on its own: the valid ones, and every section's problems."""
    sections: dict[str, Any] = {}
    problems: list[str] = []
    for name, field in PipelineConfig.model_fields.items():
        if name not in raw:
            sections[name] = None if field.is_required() else field.get_default(call_default_factory=True)
            if field.is_required():
                problems.append(f"{name}: required section [{name}] is missing")
            continue
        try:
            sections[name] = TypeAdapter(Annotated[field.annotation, field]).validate_python(raw[name])
        except ValidationError as e:
            sections[name] = None
            problems += error_lines(e, Annotated[field.annotation, field], (name,))
    return sections, problems


def _resolve_file_source(cfg: PipelineConfig, folder: Path) -> PipelineConfig:
    src = cfg.source
    if getattr(src, "kind", "") == "file" and src.path is not None and not Path(src.path).is_absolute():
        return cfg.model_copy(update={"source": src.model_copy(update={"path": str((folder / src.path).resolve())})})
    return cfg


def _resolve_model_path(raw: dict[str, Any], folder: Path) -> None:
    """Make ``features.pain_index.model`` absolute, relative to the pipeline file's folder (in place)."""
    pain = (raw.get("features") or {}).get("pain_index") if isinstance(raw.get("features"), dict) else None
    if isinstance(pain, dict) and isinstance(pain.get("model"), str) and pain["model"]:
        model = Path(pain["model"]).expanduser()
        if not model.is_absolute():
            pain["model"] = str((folder / model).resolve())


def _profile(device: Any, folder: Path) -> tuple[DeviceProfile | None, list[str]]:
    if device is None:
        return None, []
    name = device.profile
    try:
        return load_profile(find_profile(name, pipeline_dir=folder)), []
    except FileNotFoundError as e:
        return None, [f"device.profile: {e}"]
    except ValidationError as e:
        return None, [f"device.profile ({name}): {m}" for m in error_lines(e, DeviceProfile)]
    except (ValueError, OSError) as e:
        return None, [f"device.profile ({name}): {e}"]


def validate_raw(raw: dict[str, Any], folder: Path, label: str) -> ResolvedPipeline:
    """Validate a pipeline's parsed TOML (see :func:`load_pipeline`); ``folder`` anchors relative paths.

    Raises
    ------
    PipelineError
        Listing every problem.
    """
    problems = [f"{k}: {unknown_key(PipelineConfig, k)}" for k in raw if k not in PipelineConfig.model_fields]
    _resolve_model_path(raw, folder)
    sections, section_problems = _sections(raw)
    problems += section_problems
    if ("controller" in raw) != ("device" in raw):
        have, lack = ("controller", "device") if "controller" in raw else ("device", "controller")
        problems.append(
            f"{lack}: required with [{have}] (a pipeline without both only extracts features: closedloop features)"
        )
    profile, profile_problems = _profile(sections.get("device"), folder)
    problems += profile_problems
    problems += check_sections(sections, profile)
    problems = list(dict.fromkeys(problems))
    if problems:
        raise PipelineError(label, problems)
    cfg = PipelineConfig.model_validate(raw)
    return ResolvedPipeline(config=_resolve_file_source(cfg, folder), profile=profile, path=label)


def load_pipeline(path: str | Path, overrides: dict[str, object] | None = None) -> ResolvedPipeline:
    """Read, validate and resolve a pipeline file.

    Parameters
    ----------
    path : str | Path
        The TOML file, or the bare name of a pipeline shipped with closedloop
        (``alpha_tacs``).
    overrides : dict, optional
        Dotted keys replacing values of the file (``{"controller.lower": 1.2}``),
        validated like the file itself (``--set``, parameter sweeps).

    Raises
    ------
    PipelineError
        Listing every problem, each naming its key and what is allowed.
    """
    path = find_pipeline(path)
    if path.is_dir():
        raise PipelineError(str(path), [f"{path} is a folder; give a pipeline TOML file"])
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise PipelineError(str(path), [f"not valid TOML: {e}"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise PipelineError(str(path), [f"cannot read the file: {e}"]) from None
    problems = _apply(raw, overrides or {})
    if problems:
        raise PipelineError(str(path), problems)
    resolved = validate_raw(raw, path.parent, str(path.resolve()))
    return resolved
