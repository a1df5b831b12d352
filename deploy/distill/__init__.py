"""The ``deploy distill`` command (:mod:`deploy.distill.cli`); the library is :mod:`deploy.train.distill`."""
