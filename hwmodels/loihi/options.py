"""The options of the Loihi targets (``loihi``, ``loihi2``), as a typed, frozen schema."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from hwmodels.options import Options


class LoihiOptions(Options):
    """Mapping options; the fixed-point limits themselves come from the spec."""

    #: chips available (None: the spec's ``max_chips``)
    chips: PositiveInt | None = None
    #: clip weights, thresholds and biases that overflow their fixed-point formats instead of refusing
    saturate: bool = False
    #: weight scale to integers (None or "auto": per population)
    scale: PositiveFloat | Literal["auto"] | None = None
    #: bias exponent (netx builds every LIF with 6); at most the spec's ``bias_exp_max``
    bias_exp: int = Field(6, ge=0)
    #: bits of non-spike inputs (None: the spec's ``input_bits``)
    input_bits: int | None = Field(None, ge=1, le=16)
    #: dense weight exponent fixed at 0 (exactly exportable to netx)
    netx: bool = False
    #: refuse reset "subtract" instead of approximating it
    strict_reset: bool = False
    #: the bit-accurate reference model, or Lava's CPU simulation
    backend: Literal["reference", "lava"] = "reference"
