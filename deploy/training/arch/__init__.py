"""Built-in example architectures (``build()`` specs by name)."""

from collections.abc import Callable
from typing import Any

from deploy.training.arch import dvsnet as _dvs
from deploy.training.arch import vgg as _vgg
from deploy.training.arch.dvsnet import dvsnet
from deploy.training.arch.vgg import vgg_cifar

#: built-in architectures by name: name -> function returning a build() spec
ARCHITECTURES: dict[str, Callable[..., dict[str, Any]]] = {_dvs.NAME: dvsnet, _vgg.NAME: vgg_cifar}

__all__ = ["ARCHITECTURES", "dvsnet", "vgg_cifar"]
