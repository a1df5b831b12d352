"""Teachers for distillation: small torch ANNs in a native-style checkpoint, or native SNNs.

An ANN checkpoint is ``{"format": "neurodeploy-ann", "version": 1, "arch": [layer dicts],
"input_shape": [...], "state_dict": {...}, "meta": {...}}``; ``arch`` is plain JSON-able
data (dims resolved), so it loads with ``torch.load(weights_only=True)`` and no code runs.
Layer types: conv2d, linear, relu, pool2d (mode avg|max), flatten, dropout.

Every teacher answers ``logits(x)`` (B, classes) and ``forward_features(x)``
(logits plus named intermediate activations (B, ...), for hint losses); ``x`` is a
batch of images in [0, 1], reshaped to the teacher's input with :func:`fit_to_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from deploy import ir
from deploy.data import Split, fit_to_model
from deploy.errors import DeployError, ModelError
from deploy.io import native
from deploy.io.atomic import atomic_write
from deploy.repro import reproducible
from deploy.snn.net import SpikingNet

ANN_FORMAT = "neurodeploy-ann"
ANN_VERSION = 1
_ANN_TYPES = ("conv2d", "linear", "relu", "pool2d", "flatten", "dropout")


# -- the ANN -------------------------------------------------------------------------
def _resolve(layers: list[dict[str, Any]], input_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """Fill in the input dims of a compact layer list (as :func:`deploy.snn.net.build` takes)."""
    shape = tuple(int(s) for s in input_shape)
    out = []
    for i, layer in enumerate(layers):
        d = dict(layer)
        kind = d.get("type")
        d.setdefault("name", f"{kind}{i}")
        if kind not in _ANN_TYPES:
            raise ModelError(f"ANN layer '{d['name']}': unknown layer type {kind!r} "
                             f"(choose from {', '.join(_ANN_TYPES)})")
        if kind == "conv2d":
            if len(shape) != 3:
                raise ModelError(f"ANN layer '{d['name']}': conv2d needs a (C, H, W) input, got {shape}")
            d.setdefault("in_channels", shape[0])
            d.setdefault("stride", 1)
            d.setdefault("padding", 0)
            k, s, p = (int(d[key]) for key in ("kernel_size", "stride", "padding"))
            shape = (int(d["out_channels"]), (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1)
        elif kind == "linear":
            d.setdefault("in_features", int(np.prod(shape)))
            if int(d["in_features"]) != int(np.prod(shape)):
                raise ModelError(f"ANN layer '{d['name']}': expects {d['in_features']} inputs, gets {shape}")
            shape = (int(d["out_features"]),)
        elif kind == "pool2d":
            d.setdefault("mode", "max")
            d.setdefault("stride", d["kernel_size"])
            k, s = int(d["kernel_size"]), int(d["stride"])
            shape = (shape[0], (shape[1] - k) // s + 1, (shape[2] - k) // s + 1)
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
        if any(n < 1 for n in shape):
            raise ModelError(f"ANN layer '{d['name']}': output shape {shape} is empty")
        out.append(d)
    return out


def _module(d: dict[str, Any]) -> nn.Module:
    kind = d["type"]
    if kind == "conv2d":
        return nn.Conv2d(int(d["in_channels"]), int(d["out_channels"]), int(d["kernel_size"]),
                         stride=int(d["stride"]), padding=int(d["padding"]))
    if kind == "linear":
        return nn.Linear(int(d["in_features"]), int(d["out_features"]))
    if kind == "relu":
        return nn.ReLU()
    if kind == "pool2d":
        cls = nn.MaxPool2d if d["mode"] == "max" else nn.AvgPool2d
        return cls(int(d["kernel_size"]), int(d["stride"]))
    if kind == "flatten":
        return nn.Flatten()
    return nn.Dropout(float(d.get("p", 0.2)))


class ANN(nn.Module):
    """A feed-forward torch ANN described by a list of layer dicts."""

    kind = "ann"
    encoding = "direct"

    def __init__(self, arch: list[dict[str, Any]], input_shape: tuple[int, ...], name: str = "ann"):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.arch = _resolve(arch, self.input_shape)
        self.name = name
        self.layers = nn.ModuleDict({d["name"]: _module(d) for d in self.arch})

    @property
    def classes(self) -> int:
        return int(self(torch.zeros(1, *self.input_shape)).shape[-1])

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(logits, {layer name: activation (B, ...)})."""
        feats = {}
        for name, layer in self.layers.items():
            x = layer(x)
            feats[name] = x
        return x, feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

    def hint_layer(self) -> str:
        """Default hint layer: the last activation before the classifier."""
        relus = [d["name"] for d in self.arch if d["type"] == "relu"]
        return relus[-1] if relus else self.arch[-1]["name"]


def build_ann(spec: dict[str, Any], seed: int = 0) -> ANN:
    """An untrained ANN from ``{"input_shape": [...], "layers": [...], "name": ...}``."""
    torch.manual_seed(seed)
    return ANN(spec["layers"], tuple(spec["input_shape"]), spec.get("name", "ann"))


@reproducible
def train_ann(ann: ANN, split: Split, epochs: int = 5, lr: float = 2e-3, batch_size: int = 64,
              seed: int = 0, progress: bool = True) -> list[dict[str, float]]:
    """Train an ANN teacher with Adam and cross-entropy; returns per-epoch test accuracy."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = fit_to_model(split.x_train, ann.input_shape)
    opt = torch.optim.Adam(ann.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    history = []
    for epoch in tqdm(range(epochs), desc="teacher", disable=not progress):
        ann.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = nn.functional.cross_entropy(ann(x[idx]), split.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        history.append({"epoch": epoch + 1, "test_acc": ann_accuracy(ann, split.x_test, split.y_test)})
    ann.eval()
    return history


@torch.no_grad()
def ann_accuracy(ann: ANN, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    ann.eval()
    x = fit_to_model(x, ann.input_shape)
    hits = sum(int((ann(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
               for i in range(0, len(x), batch_size))
    return hits / max(len(x), 1)


def save_ann(ann: ANN, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write an ANN as a ``neurodeploy-ann`` checkpoint (atomically)."""
    doc = {"format": ANN_FORMAT, "version": ANN_VERSION, "arch": ann.arch, "name": ann.name,
           "input_shape": list(ann.input_shape),
           "state_dict": {k: v.detach().clone() for k, v in ann.state_dict().items()},
           "meta": {**(meta or {}), "input_shape": list(ann.input_shape)}}
    return atomic_write(path, lambda p: torch.save(doc, p))


def ann_from_document(doc: dict[str, Any], origin: str = "model") -> ANN:
    """Validate a loaded ``neurodeploy-ann`` document and rebuild the ANN."""
    if doc.get("version") != ANN_VERSION:
        raise ModelError(f"{origin}: ANN format version {doc.get('version')!r} is not supported")
    for key in ("arch", "input_shape", "state_dict"):
        if key not in doc:
            raise ModelError(f"{origin}: ANN checkpoint is missing '{key}'")
    if not isinstance(doc["arch"], list) or not all(isinstance(d, dict) for d in doc["arch"]):
        raise ModelError(f"{origin}: ANN 'arch' must be a list of layer dicts")
    try:
        ann = ANN(doc["arch"], tuple(doc["input_shape"]), str(doc.get("name", "ann")))
        ann.load_state_dict(doc["state_dict"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{origin}: malformed ANN layer ({exc})") from None
    except RuntimeError as exc:
        raise ModelError(f"{origin}: ANN weights do not match its arch "
                         f"({str(exc).splitlines()[-1].strip()[:160]})") from None
    ann.meta = dict(doc.get("meta", {}))
    return ann.eval()


# -- the teacher wrapper ---------------------------------------------------------------
class Teacher:
    """A frozen ANN or SNN that scores image batches for a distillation loss."""

    def __init__(self, model: ANN | SpikingNet, source: str = "model"):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.source = source
        self.kind = "snn" if isinstance(model, SpikingNet) else "ann"
        if self.kind == "snn":
            self.input_shape = tuple(model.graph.input_shape)
            self.classes = int(np.prod(model.graph.shapes()[model.graph.output.name]))
            self.encoding = model.graph.encoding
        else:
            shape = getattr(model, "input_shape", None)
            if shape is None:
                raise ModelError(f"{source}: an ANN teacher needs its input_shape")
            self.input_shape, self.encoding = tuple(int(s) for s in shape), "direct"
            self.classes = int(self.forward_features(torch.zeros(1, *self.input_shape))[0].shape[-1])

    @property
    def name(self) -> str:
        return self.model.graph.name if self.kind == "snn" else getattr(self.model, "name", "ann")

    def shape_input(self, x: torch.Tensor) -> torch.Tensor:
        return fit_to_model(x, self.input_shape, self.encoding)

    @torch.no_grad()
    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(logits, features); SNN features are firing rates (mean over time) of each layer."""
        x = self.shape_input(x)
        if self.kind == "ann":
            if isinstance(self.model, ANN):
                return self.model.forward_features(x)
            return _sequential_features(self.model, x)
        out, values = self.model.run(x, record=True)
        feats = {k: v.float().mean(0) for k, v in values.items() if k != "input"}
        return self.model.logits(out), feats

    @torch.no_grad()
    def logits(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        if self.kind == "snn":
            x = self.shape_input(x)
            return torch.cat([self.model.logits(self.model(x[i:i + batch_size]))
                              for i in range(0, len(x), batch_size)])
        return torch.cat([self.forward_features(x[i:i + batch_size])[0]
                          for i in range(0, len(x), batch_size)])

    def hint_layer(self) -> str:
        """Default hint layer: the last hidden spiking layer (SNN) or activation (ANN)."""
        if self.kind == "ann":
            if isinstance(self.model, ANN):
                return self.model.hint_layer()
            names = [n for n, m in self.model.named_children() if not isinstance(m, (nn.Linear, nn.Dropout, nn.Flatten))]
            return names[-1] if names else "output"
        return default_hint_layer(self.model.graph)

    def feature_shapes(self) -> dict[str, tuple[int, ...]]:
        _, feats = self.forward_features(torch.zeros(1, *self.input_shape))
        return {k: tuple(v.shape[1:]) for k, v in feats.items()}

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float((self.logits(x).argmax(-1) == y).float().mean())


def _sequential_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(logits, activations by child name) of a sequential model, or no features otherwise."""
    if not isinstance(model, nn.Sequential):
        return model(x), {}
    feats = {}
    for name, layer in model.named_children():
        x = layer(x)
        feats[name] = x
    return x, feats


def default_hint_layer(graph: ir.Graph) -> str:
    """The last spiking layer before the output (the output itself if there is none)."""
    lifs = [n.name for n in graph.nodes if n.kind == "lif" and n is not graph.output]
    return lifs[-1] if lifs else graph.output.name


def as_teacher(teacher: Any) -> Teacher:
    """A :class:`Teacher` from a path, a Graph, a Teacher, a SpikingNet or a torch ANN
    (an :class:`ANN`, or any module with an ``input_shape`` attribute)."""
    if isinstance(teacher, Teacher):
        return teacher
    if isinstance(teacher, (str, Path)):
        return load_teacher(teacher)
    if isinstance(teacher, ir.Graph):
        return Teacher(SpikingNet(teacher), teacher.name)
    if isinstance(teacher, nn.Module):
        return Teacher(teacher)
    raise DeployError(f"teacher must be a checkpoint path, an ANN or a SpikingNet, "
                      f"got {type(teacher).__name__}")


def load_teacher(path: str | Path) -> Teacher:
    """Load a teacher checkpoint: ``neurodeploy-ann`` or a native ``neurodeploy-snn``."""
    doc = native.read_checkpoint(path)
    fmt = doc.get("format") if isinstance(doc, dict) else None
    if fmt == ANN_FORMAT:
        if any(isinstance(d, dict) and "name" in d for d in doc.get("arch") or []):
            return Teacher(ann_from_document(doc, str(path)), str(path))
        try:  # the unnamed-layer variant of the format (deploy.ann, written for conversion)
            from deploy.ann import from_document as generic_ann
        except ImportError:
            raise ModelError(f"{path}: ANN layers without names need deploy.ann to load") from None
        return Teacher(generic_ann(doc, str(path)), str(path))
    if fmt == native.FORMAT:
        return Teacher(SpikingNet(native.from_document(doc, str(path))), str(path))
    raise ModelError(f"{path}: not a teacher checkpoint (format {fmt!r}; expected "
                     f"{ANN_FORMAT!r} or {native.FORMAT!r})")
