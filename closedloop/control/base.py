"""The controller contract: frames in, a desired command out."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from closedloop.types import Command, Frame

#: What a controller does with a frame flagged bad (artefact, gap, flat, saturation, non-finite):
#: ``"hold"`` keeps its output and state; ``"ramp_down"`` asks for zero until good frames return.
OnBadFrame = Literal["hold", "ramp_down"]


@runtime_checkable
class Controller(Protocol):
    """A controller maps each frame to the command it wants.

    Controllers are plain, deterministic objects driven by frame time (the
    sample clock), so a replay reproduces a live session exactly. They never
    talk to a device: the safety layer decides what is applied.

    Controllers may also offer ``display_state() -> dict[str, float]``: what
    the operator may see (in a blinded session it does not reveal the arm);
    see :func:`display_state`.
    """

    def update(self, frame: Frame) -> Command:
        """Return the desired command after seeing ``frame``."""
        ...

    def state(self) -> dict[str, float]:
        """Numbers describing the controller's internal state (recorded per frame).

        The keys are the same from construction to the end of a session (a
        recording declares them before the first frame).
        """
        ...


def display_state(controller: Controller) -> dict[str, float]:
    """What the operator may see of ``controller`` (its ``display_state()``, else its ``state()``)."""
    fn = getattr(controller, "display_state", None)
    return fn() if callable(fn) else controller.state()


class ControllerConfigBase(BaseModel):
    """Shared checks every ``[controller]`` model answers (used by pipeline validation)."""

    model_config = ConfigDict(extra="forbid")

    def features(self) -> list[str]:
        """Feature names the controller reads."""
        return list(dict.fromkeys(self.feature_keys().values()))

    def feature_keys(self) -> dict[str, str]:
        """Config key -> feature name, for every feature the controller reads (checked by the pipeline)."""
        f = getattr(self, "feature", None)
        return {"feature": f} if f else {}

    def modalities(self) -> tuple[str, ...]:
        """Stimulation modalities whose commands this controller produces."""
        return ("tes",)

    def peak_amplitude_mA(self) -> float | None:
        """Largest amplitude the controller may ask for."""
        return getattr(self, "amplitude_mA", None)

    def frequencies_Hz(self) -> list[float]:
        """Stimulation frequencies the controller may ask for."""
        f = getattr(self, "frequency_Hz", None)
        return [] if f is None else [f]

    def ramp_rates_mA_per_s(self) -> dict[str, float]:
        """The controller's own ramp rates, by config key (checked against the device's)."""
        return {}
