"""The report (``report.json``, schema ``neurodeploy.report/1``), validated with pydantic.

Units are in the field names. Ratios in ``comparison`` are *compared target ÷
this target*: a ratio above 1 means this target uses less.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deploy.core.errors import DeployError

SCHEMA = "neurodeploy.report/1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelInfo(_Strict):
    name: str
    source: str
    params: int
    timesteps: int
    input_shape: list[int]
    encoding: str = "direct"
    sha256: str
    precision: dict[str, Any] = Field(default_factory=dict)


class TargetInfo(_Strict):
    name: str
    description: str = ""
    spec_file: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    spec: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Accuracy(_Strict):
    dataset: str
    samples: int
    reference: float | None       # None when the compile skipped the float reference
    deployed: float
    file: str | None = None       # the user's data file (--data PATH), and its sha256
    sha256: str | None = None


class Totals(_Strict):
    energy_j: float
    latency_s: float
    memory_bytes: float           # on the target: memory_base_bytes + the named overheads
    synops: float
    spikes: float
    area_mm2: float | None = None
    #: the model's memory (weights at stored precision + neuron parameters + state), same on every target
    memory_base_bytes: float | None = None
    memory_overhead_bytes: dict[str, float] = Field(default_factory=dict)


class Breakdown(_Strict):
    energy_j: dict[str, float]
    latency_s: dict[str, float]


class LayerRow(_Strict):
    name: str
    kind: str
    shape: list[int]
    energy_j: float
    latency_s: float
    memory_bytes: float
    synops: float
    spike_rate: float
    energy_breakdown_j: dict[str, float] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    memory_base_bytes: float | None = None
    memory_overhead_bytes: dict[str, float] = Field(default_factory=dict)


class Metrics(_Strict):
    """NeuroBench-style static and workload metrics (per inference).

    ``footprint_bytes`` is the toolchain's memory definition (weights at stored
    precision, sub-byte included, + neuron parameters + state);
    ``footprint_neurobench_bytes`` is NeuroBench's own (``numel * element_size`` of
    the parameters and buffers of the PyTorch module that runs the graph: float32
    whatever the stored precision, no neuron state).
    """

    params: int
    footprint_bytes: float
    footprint_neurobench_bytes: float | None = None
    activation_sparsity: float
    synops_dense: float
    synops_effective_macs: float
    synops_effective_acs: float


class Comparison(_Strict):
    """The same model and inputs on a second target (``target``); ``this_*`` repeat this report's
    figures so that both targets' accuracy and spikes sit side by side."""

    target: str
    totals: Totals
    breakdown: Breakdown
    accuracy_deployed: float | None = None
    ratios: dict[str, float | None]
    this_target: str | None = None
    this_accuracy_deployed: float | None = None
    this_spikes: float | None = None
    spikes: float | None = None
    #: spikes per inference of each spiking layer on the compared target
    layer_spikes: dict[str, float] = Field(default_factory=dict)


class HealthWarning(_Strict):
    """A finding about the deployed network: ``accuracy-collapse``, ``silent-layer``,
    ``saturated-layer`` or ``activity-mismatch``; ``layer`` is None for whole-network ones."""

    code: str
    layer: str | None = None
    message: str


class LatencyPath(_Strict):
    """How the total latency follows from the per-layer latencies."""

    pipelined: bool
    critical_layer: str | None = None
    layer_sum_s: float
    total_s: float
    note: str = ""


class Report(_Strict):
    schema_: str = Field(SCHEMA, alias="schema")
    model: ModelInfo
    target: TargetInfo
    mode: str = "activity"        # "activity" (simulated spikes) or "assumed-rate"
    accuracy: Accuracy | None = None
    totals: Totals
    breakdown: Breakdown
    metrics: Metrics
    layers: list[LayerRow]
    comparison: Comparison | None = None
    assumptions: list[str] = Field(default_factory=list)
    run: dict[str, Any] = Field(default_factory=dict)
    warnings: list[HealthWarning] = Field(default_factory=list)
    latency: LatencyPath | None = None

    # -- I/O ---------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)

    @classmethod
    def from_json(cls, text: str, origin: str = "report") -> Report:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DeployError(f"{origin}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise DeployError(f"{origin}: not a {SCHEMA} report")
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise DeployError(f"{origin}: invalid report at '{loc}': {err['msg']}") from None

    @classmethod
    def load(cls, path: str | Path) -> Report:
        path = Path(path)
        if not path.is_file():
            raise DeployError(f"{path}: no such file")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise DeployError(f"{path}: not a JSON report (binary, not UTF-8 text)") from None
        except OSError as exc:
            raise DeployError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
        if _nesting(text) > MAX_NESTING:
            raise DeployError(f"{path}: not a {SCHEMA} report (JSON nested deeper than {MAX_NESTING} levels)")
        return cls.from_json(text, str(path))

    def save(self, outdir: str | Path, figures: bool = True) -> Path:
        """Write report.json, report.md, report.html and PNG figures atomically into ``outdir``."""
        from deploy.report.render import write_all

        return write_all(self, outdir, figures=figures)

    def __str__(self) -> str:
        from deploy.report.render import text_table

        return text_table(self)

    __repr__ = __str__


#: deepest JSON nesting a report may have (a real one has fewer than 10 levels)
MAX_NESTING = 64
_JSON_STRING = re.compile(r'"(?:\\.|[^"\\])*"')


def _nesting(text: str) -> int:
    """Deepest bracket nesting of a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    for ch in re.sub(r"[^\[\]{}]", "", _JSON_STRING.sub("", text)):
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    return deepest
