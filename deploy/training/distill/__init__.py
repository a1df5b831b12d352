"""Knowledge distillation into compact, sparse SNN students (``deploy distill``).

    from deploy.training.distill import distill, load_teacher
    student, history = distill("teacher.pt", "examples/students/digits_student.yaml",
                               deploy.core.data.load("digits"), method="hetero-kd", spike_reg=0.5)
"""

from deploy.training.distill.distill import (
    METHODS,
    build_student,
    distill,
    load_student_spec,
    measure,
    widen,
)
from deploy.training.distill.losses import HeteroTemperature, HintLoss, kd_loss, spike_rate_loss
from deploy.training.distill.teachers import Teacher, load_teacher

__all__ = ["METHODS", "HeteroTemperature", "HintLoss", "Teacher", "build_student", "distill", "kd_loss",
           "load_student_spec", "load_teacher", "measure", "spike_rate_loss", "widen"]
