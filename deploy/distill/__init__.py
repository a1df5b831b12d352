"""Knowledge distillation into compact, sparse SNN students (``deploy distill``).

    from deploy.distill import distill, load_teacher
    student, history = distill("teacher.pt", "examples/students/digits_student.yaml",
                               deploy.data.load("digits"), method="hetero-kd", spike_reg=0.5)
"""

from deploy.distill.distill import (
    METHODS,
    build_student,
    distill,
    load_student_spec,
    measure,
    widen,
)
from deploy.distill.losses import HeteroTemperature, HintLoss, kd_loss, spike_rate_loss
from deploy.distill.teachers import ANN, Teacher, build_ann, load_teacher, save_ann, train_ann

__all__ = ["METHODS", "ANN", "HeteroTemperature", "HintLoss", "Teacher", "build_ann", "build_student",
           "distill", "kd_loss", "load_student_spec", "load_teacher", "measure", "save_ann",
           "spike_rate_loss", "train_ann", "widen"]
