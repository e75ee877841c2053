"""``scaledet pseudo-label``: a teacher's detections added to a unified training set only where its label
states say nothing is known.

The federated loss already stops training unknown labels as negatives; the boxes a dataset never drew are
still missing. Tools that fill them (yolov5's ``--save-hybrid``, YOLOE's data engine) add every confident
prediction that overlaps no box, also where a dataset verified the class absent. Here each cell (image ×
category) of a ``scaledet-labels unify`` file is read from the file's own lists (``cells.py``):

=========  =================================================  ======================================
cell       in the file                                        pseudo boxes
=========  =================================================  ======================================
negative   in ``neg_category_ids``                            never
positive   boxed, not in ``not_exhaustive_category_ids``      never (every instance is boxed)
partial    in ``not_exhaustive_category_ids``                 yes, none within IoU 0.5 of a box of it
unknown    none of the above                                  yes
=========  =================================================  ======================================

A cell that receives boxes becomes partial (its category joins ``not_exhaustive_category_ids``), so no
reader trains the rest of it as background. Each pseudo box carries ``"pseudo": true`` and its ``score``.

Each category's score threshold is chosen on its exhaustive cells (positive and negative: there every
instance is known, so every detection is a true or a false positive) as the lowest score at which the
teacher's precision still reaches ``--precision`` (``thresholds.py``); a fixed ``--threshold`` is measured
the same way. The teacher is a results file in the file's categories (any detector) or a scaledet
checkpoint run over the images (``teacher.py``, resumable). Memory stays bounded: boxes and detections are
flat arrays (``tables.py``), images are streamed twice (calibrate, then write).
"""
from .run import PseudoLabelReport, pseudo_label

__all__ = ["PseudoLabelReport", "pseudo_label"]
