"""A small, safe checkpoint format for plain (non-spiking) networks, and the layers it builds.

``{"format": "neurodeploy-ann", "version": 1, "arch": [layer dicts], "input_shape", "state_dict", "meta"}``
is read with ``torch.load(weights_only=True)``: no code runs. ``input_shape`` (top level,
also copied to ``meta``) is the per-sample input shape. This module is the one reader and
writer of the format, and its :class:`ANN` is the network conversion
(:mod:`deploy.training.convert`) reads and distillation (:mod:`deploy.training.distill`) teaches with.
Layer dicts (``type`` plus the constructor arguments, optionally a ``name``)::

    {"type": "conv2d", "in_channels": 1, "out_channels": 16, "kernel_size": 3, "padding": 1}
    {"type": "linear", "in_features": 64, "out_features": 10}
    {"type": "batchnorm2d", "num_features": 16}        # also batchnorm1d
    {"type": "relu"} {"type": "clip", "bound": 4.0}    # clip: trainable ReLU ceiling (TCL)
    {"type": "avgpool2d", "kernel_size": 2} {"type": "maxpool2d", "kernel_size": 2}
    {"type": "pool2d", "mode": "max", "kernel_size": 2}   # mode max | avg
    {"type": "flatten"} {"type": "dropout", "p": 0.1} {"type": "sigmoid"} {"type": "tanh"}
    {"type": "residual", "body": [...], "shortcut": [...], "act": {"type": "relu"}}
    {"type": "adder_conv2d", "in_channels": 1, "out_channels": 8, "kernel_size": 3, "padding": 1,
     "stride": 1, "eta": 0.1}                           # AdderNet layers (deploy.training.adder)
    {"type": "adder_linear", "in_features": 64, "out_features": 10, "eta": 0.1}

A residual block computes ``act(body(x) + shortcut(x))``; an empty shortcut is the identity.
:func:`build` fills in a layer's input size (``in_channels``, ``in_features``) from the shape
the layers before it produce, so a spec may give only the output sizes. An arch with adder
layers is frame-based and cannot be converted to an SNN.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deploy.core.data import Split, fit_to_model
from deploy.core.errors import ModelError
from deploy.core.progress import bar as progress_bar
from deploy.core.repro import reproducible
from deploy.io.atomic import atomic_write
from deploy.io.native import ANN_FORMAT, read_checkpoint
from deploy.io.native import FORMAT as SNN_FORMAT
from deploy.training.adder import AdderConv2d, AdderLinear

FORMAT = ANN_FORMAT
VERSION = 1


class Clip(nn.Module):
    """ReLU with a trainable ceiling ``y = min(max(x, 0), bound)`` (TCL, Ho & Chang 2021).

    The bound gets gradient where ``x > bound``; an L2 penalty on it
    (:func:`clip_penalty`) keeps it tight. After training it is the conversion threshold.
    """

    def __init__(self, bound: float = 4.0):
        super().__init__()
        self.bound = nn.Parameter(torch.tensor(float(bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.minimum(F.relu(x), self.bound)

    def extra_repr(self) -> str:
        return f"bound={float(self.bound):.4g}"


class Residual(nn.Module):
    """``act(body(x) + shortcut(x))``; an empty shortcut is the identity."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential | None = None,
                 act: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Sequential()
        self.act = act if act is not None else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ANN(nn.Sequential):
    """An ``nn.Sequential`` (children optionally named) that knows its per-sample input shape."""

    kind = "ann"
    encoding = "direct"

    def __init__(self, layers: list[nn.Module] | dict[str, nn.Module], input_shape: tuple[int, ...],
                 name: str = "ann"):
        if isinstance(layers, dict):
            super().__init__(OrderedDict(layers))
        else:
            super().__init__(*layers)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.name = name

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(logits, {layer name: activation (B, ...)})."""
        feats = {}
        for name, layer in self.named_children():
            x = layer(x)
            feats[name] = x
        return x, feats

    def hint_layer(self) -> str:
        """The last activation (ReLU or clip) before the classifier; the last layer if there is none."""
        names = [n for n, m in self.named_children() if isinstance(m, (nn.ReLU, Clip))]
        return names[-1] if names else list(self._modules)[-1]


_SIMPLE: dict[str, type[nn.Module]] = {
    "linear": nn.Linear, "conv2d": nn.Conv2d, "batchnorm1d": nn.BatchNorm1d,
    "batchnorm2d": nn.BatchNorm2d, "relu": nn.ReLU, "clip": Clip, "avgpool2d": nn.AvgPool2d,
    "maxpool2d": nn.MaxPool2d, "flatten": nn.Flatten, "dropout": nn.Dropout,
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "identity": nn.Identity,
    "adder_conv2d": AdderConv2d, "adder_linear": AdderLinear,
}
_ARGS: dict[type[nn.Module], tuple[str, ...]] = {
    nn.Linear: ("in_features", "out_features"),
    nn.Conv2d: ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"),
    nn.BatchNorm1d: ("num_features", "eps", "momentum"), nn.BatchNorm2d: ("num_features", "eps", "momentum"),
    nn.AvgPool2d: ("kernel_size", "stride", "padding"), nn.MaxPool2d: ("kernel_size", "stride", "padding"),
    nn.Dropout: ("p",), nn.Flatten: ("start_dim",),
    AdderConv2d: ("in_channels", "out_channels", "kernel_size", "padding", "stride", "eta"),
    AdderLinear: ("in_features", "out_features", "eta"),
}
#: layer types whose input size :func:`build` infers, and the argument that holds it
_INFER = {"conv2d": "in_channels", "adder_conv2d": "in_channels", "linear": "in_features",
          "adder_linear": "in_features"}


def build_layer(spec: dict[str, Any], where: str = "layer") -> nn.Module:
    """One module from a layer dict (see the module docstring)."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ModelError(f"{where}: layer entry has no 'type'")
    spec = dict(spec)
    kind = str(spec.pop("type"))
    if kind == "pool2d":
        mode = spec.pop("mode", "max")
        if mode not in ("max", "avg"):
            raise ModelError(f"{where}: pool2d mode must be max or avg, got {mode!r}")
        kind = f"{mode}pool2d"
    if kind == "residual":
        body = nn.Sequential(*build_layers(spec.get("body", []), f"{where}.body"))
        shortcut = nn.Sequential(*build_layers(spec.get("shortcut", []), f"{where}.shortcut"))
        act = build_layer(spec.get("act", {"type": "relu"}), f"{where}.act")
        return Residual(body, shortcut, act)
    cls = _SIMPLE.get(kind)
    if cls is None:
        raise ModelError(f"{where}: unknown layer type {kind!r} (known: {', '.join(sorted([*_SIMPLE, 'pool2d', 'residual']))})")
    if "bias" in spec and cls in (nn.Linear, nn.Conv2d):
        spec["bias"] = bool(spec["bias"])
    try:
        return cls(**spec)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: bad arguments for {kind}: {exc}") from None


def build_layers(specs: list[dict[str, Any]], where: str = "arch") -> list[nn.Module]:
    if not isinstance(specs, list):
        raise ModelError(f"{where}: expected a list of layer dicts")
    return [build_layer(s, f"{where}[{i}]") for i, s in enumerate(specs)]


def build(arch: list[dict[str, Any]], input_shape: tuple[int, ...], name: str = "ann") -> ANN:
    """An untrained :class:`ANN` from an arch list; missing input sizes are inferred (see above)."""
    if not isinstance(arch, list):
        raise ModelError("arch: expected a list of layer dicts")
    shape = tuple(int(s) for s in input_shape)
    layers: dict[str, nn.Module] = {}
    for i, spec in enumerate(arch):
        if not isinstance(spec, dict):
            raise ModelError(f"arch[{i}]: expected a layer dict, got {type(spec).__name__}")
        spec = dict(spec)
        lname = str(spec.pop("name", i))
        where = f"ANN layer '{lname}'"
        arg = _INFER.get(str(spec.get("type")))
        if arg == "in_channels" and arg not in spec:
            if len(shape) != 3:
                raise ModelError(f"{where}: {spec['type']} needs a (C, H, W) input, got {shape}")
            spec[arg] = shape[0]
        if arg == "in_features":
            spec.setdefault(arg, math.prod(shape))
        layers[lname] = m = build_layer(spec, where)
        try:
            with torch.no_grad():
                shape = tuple(m.eval()(torch.zeros(1, *shape)).shape[1:])
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"{where}: does not fit its input of shape {shape} "
                             f"({str(exc).splitlines()[0][:120]})") from None
        if any(n < 1 for n in shape):
            raise ModelError(f"{where}: output shape {shape} is empty")
    return ANN(layers, input_shape, name).train()


def from_spec(spec: dict[str, Any], seed: int = 0) -> ANN:
    """An untrained ANN from ``{"input_shape": [...], "layers": [...], "name": ...}``, seeded.

    Unnamed layers are called ``<type><index>`` (``conv2d0``, ``relu1``, ...); dropout defaults to p = 0.2.
    """
    torch.manual_seed(seed)
    layers = [{"name": f"{d.get('type')}{i}", **({"p": 0.2} if d.get("type") == "dropout" else {}), **d}
              if isinstance(d, dict) else d for i, d in enumerate(spec["layers"])]
    return build(layers, tuple(spec["input_shape"]), spec.get("name", "ann"))


def layer_spec(m: nn.Module, where: str = "layer") -> dict[str, Any]:
    """The layer dict of a module (inverse of :func:`build_layer`)."""
    if isinstance(m, Residual):
        return {"type": "residual", "body": [layer_spec(c, f"{where}.body") for c in m.body],
                "shortcut": [layer_spec(c, f"{where}.shortcut") for c in m.shortcut],
                "act": layer_spec(m.act, f"{where}.act")}
    if isinstance(m, Clip):
        return {"type": "clip", "bound": float(m.bound.detach())}
    for kind, cls in _SIMPLE.items():
        if type(m) is cls:
            out: dict[str, Any] = {"type": kind}
            for a in _ARGS.get(cls, ()):
                v = getattr(m, a)
                out[a] = list(v) if isinstance(v, tuple) else v
            if cls in (nn.Linear, nn.Conv2d):
                out["bias"] = m.bias is not None
            return out
    raise ModelError(f"{where}: cannot describe {type(m).__name__} in the {FORMAT} format")


def arch_of(model: nn.Module) -> list[dict[str, Any]]:
    """Arch list of an ``nn.Sequential`` (or :class:`ANN`) of supported layers; children with
    names other than their index keep them."""
    if not isinstance(model, nn.Sequential):
        raise ModelError(f"the {FORMAT} format stores nn.Sequential models, got {type(model).__name__}")
    out = []
    for i, (name, m) in enumerate(model.named_children()):
        spec = layer_spec(m, f"layer '{name}'")
        out.append(spec if name == str(i) else {"name": name, **spec})
    return out


def to_document(model: nn.Module, input_shape: tuple[int, ...] | None = None,
                meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint document of an ``nn.Sequential`` of supported layers (an :class:`ANN`, or
    the ``conv_net`` of a PKKD run): its arch list, a copy of its state_dict and ``meta``."""
    shape = input_shape or getattr(model, "input_shape", None)
    if shape is None:
        raise ModelError("input_shape is required to save an ANN")
    return {"format": FORMAT, "version": VERSION, "arch": arch_of(model), "name": getattr(model, "name", "ann"),
            "input_shape": [int(s) for s in shape],
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "meta": {**(meta or {}), "input_shape": [int(s) for s in shape]}}


def save(model: nn.Module, path: str | Path, input_shape: tuple[int, ...] | None = None,
         meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a native ANN checkpoint (atomically; see :func:`to_document`)."""
    doc = to_document(model, input_shape, meta)
    return atomic_write(path, lambda p: torch.save(doc, p))


def from_document(doc: Any, origin: str = "model") -> ANN:
    """Build the ANN of a loaded checkpoint document, validating it."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ModelError(f"{origin}: not a {FORMAT} checkpoint (found {found!r})")
    if doc.get("version") != VERSION:
        raise ModelError(f"{origin}: {FORMAT} version {doc.get('version')!r} is not supported (reads {VERSION})")
    meta = dict(doc.get("meta") or {})
    meta.setdefault("input_shape", doc.get("input_shape"))
    if meta.get("input_shape") is None:
        raise ModelError(f"{origin}: checkpoint has no 'input_shape'")
    state = doc.get("state_dict")
    if not isinstance(state, dict):
        raise ModelError(f"{origin}: checkpoint has no state_dict")
    if state and all(k.startswith("layers.") for k in state):   # written by an earlier teacher class
        state = {k.removeprefix("layers."): v for k, v in state.items()}
    try:
        model = build(doc.get("arch"), tuple(meta["input_shape"]), str(doc.get("name", "ann")))
    except (TypeError, KeyError) as exc:
        raise ModelError(f"{origin}: malformed ANN layer ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{origin}: state_dict does not match the arch ({str(exc).splitlines()[0][:160]})") from None
    model.meta = meta
    return model.eval()


def load(path: str | Path, trust_pickle: bool = False) -> nn.Module:
    """Load an ANN: a native checkpoint (``weights_only=True``, no code runs), or with
    ``trust_pickle`` a pickled ``nn.Module`` (unpickling runs code from the file)."""
    path = Path(path)
    if trust_pickle:
        if not path.is_file():
            raise ModelError(f"{path}: no such file")
        try:
            doc = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - unpickling can fail in any way
            raise ModelError(f"{path}: cannot unpickle ({str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__})") from None
        if isinstance(doc, nn.Module):
            return doc.eval()
    else:
        doc = read_checkpoint(path)
    if isinstance(doc, dict) and doc.get("format") == SNN_FORMAT:
        raise ModelError(f"{path}: is already a spiking network ({SNN_FORMAT}); convert takes an ANN")
    if isinstance(doc, dict) and "format" not in doc and doc and all(isinstance(v, torch.Tensor) for v in doc.values()):
        raise ModelError(f"{path}: a bare state_dict has no architecture; save the model with "
                         "deploy.training.ann.save or pass a pickled nn.Module with --trust-pickle")
    return from_document(doc, str(path))


# -- training ---------------------------------------------------------------------
def clip_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of squared clip bounds (the TCL L2 term)."""
    bounds = [m.bound ** 2 for m in model.modules() if isinstance(m, Clip)]
    return torch.stack(bounds).sum() if bounds else torch.zeros(())


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy; ``x`` is reshaped to ``model.input_shape`` when it has one."""
    model.eval()
    x = _fit(model, x)
    correct = sum(int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / max(len(x), 1)


def _fit(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    shape = getattr(model, "input_shape", None)
    return x if shape is None else fit_to_model(x, shape)


@reproducible
def fit(model: nn.Module, split: Split, epochs: int = 20, lr: float = 2e-3, batch_size: int = 64,
        clip_decay: float = 5e-4, weight_decay: float = 0.0, seed: int = 0,
        progress: bool = False) -> list[dict[str, float]]:
    """Train an ANN with Adam and a cosine schedule (cross-entropy + TCL clip penalty); the model
    ends in eval mode. Returns one record per epoch (loss, test accuracy)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = _fit(model, split.x_train), split.y_train
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    history = []
    for epoch in progress_bar(range(epochs), desc="train ANN", disable=not progress):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx]) + clip_decay * clip_penalty(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        history.append({"epoch": epoch + 1, "loss": total / len(x),
                        "test_acc": evaluate(model, split.x_test, split.y_test)})
    return history
