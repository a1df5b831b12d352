"""Target options of the IMC crossbar: parsed, defaulted and validated in one place.

Options come from ``Target(options=...)`` or the ``options:`` section of a
``--config`` YAML. Non-ideality keys may be given flat or nested under
``nonideal:``. Every bad value raises :class:`TargetError` with one line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from deploy.core.errors import TargetError
from hwmodels.spec import Spec

SIGNED_MODES = ("differential", "offset")
VARIATION_MODELS = ("lognormal", "gaussian")
READ_ENERGY = ("neurosim", "physical")


@dataclass(frozen=True)
class NonIdeal:
    """Device non-idealities; the defaults are an ideal crossbar."""

    levels: int | None = None          # programmable conductance levels per cell (None: 2**bits_per_cell)
    finite_on_off: bool = False         # off cells conduct G_off = 1/R_off (spec) instead of 0
    variation: float = 0.0              # relative sigma of the programmed conductance
    variation_model: str = "lognormal"  # lognormal | gaussian
    read_noise: float = 0.0             # relative sigma of every cell's conductance at each read
    stuck_on: float = 0.0               # fraction of cells stuck at the highest conductance
    stuck_off: float = 0.0              # fraction of cells stuck at the lowest conductance

    @property
    def programmed(self) -> bool:
        """True when programming changes the conductances (variation, faults, levels, G_off)."""
        return bool(self.variation or self.stuck_on or self.stuck_off or self.levels or self.finite_on_off)

    @property
    def any(self) -> bool:
        return self.programmed or bool(self.read_noise)


@dataclass(frozen=True)
class ImcConfig:
    """The resolved options of one IMC target."""

    rows: int = 128
    cols: int = 128
    bits_per_cell: int = 1
    weight_bits: int = 4
    weight_bits_explicit: bool = False
    signed: str = "differential"
    adc_bits: int = 1
    adc_share: int = 1
    step: float = 1.0                   # conversion step in cell-current units (SA reference = step / 2)
    input_bits: int = 4                 # bit-planes of analog (non-spike) inputs
    read_energy: str = "neurosim"
    calibrate: bool = False             # set conversion steps from the first simulated batch
    nonideal: NonIdeal = field(default_factory=NonIdeal)
    seed: int = 0

    @property
    def levels_per_cell(self) -> int:
        return 2 ** self.bits_per_cell

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("weight_bits_explicit")
        return d


_FLAT_NONIDEAL = {f for f in NonIdeal.__dataclass_fields__}
_KNOWN = {"rows", "cols", "bits_per_cell", "weight_bits", "signed", "adc_bits", "adc_share", "sa_reference",
          "adc_step", "input_bits", "read_energy", "seed", "nonideal", "calibrate"} | _FLAT_NONIDEAL


def _int(opts: dict[str, Any], key: str, default: int, lo: int, hi: int | None = None) -> int:
    val = opts.get(key, default)
    if isinstance(val, bool) or not isinstance(val, (int, float)) or int(val) != val:
        raise TargetError(f"option '{key}' must be an integer, got {val!r}")
    val = int(val)
    if val < lo or (hi is not None and val > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise TargetError(f"option '{key}' must be {rng}, got {val}")
    return val


def _float(opts: dict[str, Any], key: str, default: float, lo: float = 0.0, hi: float | None = None,
           strict: bool = False) -> float:
    val = opts.get(key, default)
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise TargetError(f"option '{key}' must be a number, got {val!r}")
    val = float(val)
    if (val <= lo if strict else val < lo) or (hi is not None and val > hi):
        raise TargetError(f"option '{key}' must be {'>' if strict else '>='} {lo:g}"
                          + (f" and <= {hi:g}" if hi is not None else "") + f", got {val:g}")
    return val


def _bool(opts: dict[str, Any], key: str, default: bool) -> bool:
    val = opts.get(key, default)
    if not isinstance(val, bool):
        raise TargetError(f"option '{key}' must be true or false, got {val!r}")
    return val


def _choice(opts: dict[str, Any], key: str, default: str, choices: tuple[str, ...]) -> str:
    val = opts.get(key, default)
    if val not in choices:
        raise TargetError(f"option '{key}' must be one of {', '.join(choices)}, got {val!r}")
    return str(val)


def parse_options(options: dict[str, Any], spec: Spec, adc: bool) -> ImcConfig:
    """Resolve ``options`` for the ADC-less (``adc=False``) or the ADC target."""
    opts = dict(options or {})
    nested = opts.pop("nonideal", None) or {}
    if not isinstance(nested, dict):
        raise TargetError("option 'nonideal' must be a mapping")
    opts.update(nested)
    unknown = sorted(set(opts) - _KNOWN)
    if unknown:
        raise TargetError(f"unknown IMC option '{unknown[0]}' (known: {', '.join(sorted(_KNOWN))})")
    max_bpc = int(spec["max_bits_per_cell"])
    rows = _int(opts, "rows", 128, 1)
    cols = _int(opts, "cols", 128, 1)
    bpc = opts.get("bits_per_cell", 1)
    if isinstance(bpc, (int, float)) and not isinstance(bpc, bool) and int(bpc) == bpc and bpc > max_bpc:
        raise TargetError(f"option 'bits_per_cell' = {int(bpc)} exceeds the {max_bpc} bits per cell "
                          f"the spec allows ({spec.path})")
    bpc = _int(opts, "bits_per_cell", 1, 1, max_bpc)
    wbits = _int(opts, "weight_bits", 4, 2, 16)
    max_adc = int(spec["max_adc_bits"])
    if adc:
        adc_bits = _int(opts, "adc_bits", 5, 1, max_adc)
        share = _int(opts, "adc_share", 8, 1)
        step = _float(opts, "adc_step", 1.0, 0.0, strict=True)
    else:
        adc_bits, share = 1, 1
        step = 2.0 * _float(opts, "sa_reference", 0.5, 0.0, strict=True)
    levels = opts.get("levels")
    if levels is not None:
        levels = _int(opts, "levels", 2, 2, 2 ** bpc)
    ni = NonIdeal(
        levels=levels, finite_on_off=_bool(opts, "finite_on_off", False),
        variation=_float(opts, "variation", 0.0, 0.0, 10.0),
        variation_model=_choice(opts, "variation_model", "lognormal", VARIATION_MODELS),
        read_noise=_float(opts, "read_noise", 0.0, 0.0, 10.0),
        stuck_on=_float(opts, "stuck_on", 0.0, 0.0, 1.0), stuck_off=_float(opts, "stuck_off", 0.0, 0.0, 1.0))
    if ni.stuck_on + ni.stuck_off > 1:
        raise TargetError("options 'stuck_on' + 'stuck_off' exceed 1")
    return ImcConfig(rows=rows, cols=cols, bits_per_cell=bpc, weight_bits=wbits,
                     weight_bits_explicit="weight_bits" in opts,
                     signed=_choice(opts, "signed", "differential", SIGNED_MODES),
                     adc_bits=adc_bits, adc_share=share, step=step,
                     input_bits=_int(opts, "input_bits", 4, 1, 16),
                     read_energy=_choice(opts, "read_energy", "neurosim", READ_ENERGY),
                     calibrate=_bool(opts, "calibrate", False),
                     nonideal=ni, seed=_int(opts, "seed", 0, 0))
