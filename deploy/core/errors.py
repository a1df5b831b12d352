"""Exceptions whose message is the one line a user sees."""


class DeployError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits non-zero."""


class ModelError(DeployError):
    """The model file or graph is malformed or unsupported."""


class DataError(DeployError):
    """A dataset is missing, malformed or does not fit the model."""


class TargetError(DeployError):
    """The model does not fit the target, or the target spec is invalid."""
