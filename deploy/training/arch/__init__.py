"""Built-in example architectures (``build()`` specs by name)."""

from deploy.training.arch.dvsnet import ARCHITECTURES, dvsnet

__all__ = ["ARCHITECTURES", "dvsnet"]
