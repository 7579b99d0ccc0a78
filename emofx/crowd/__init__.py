"""Crowd labels: answers as data, aggregation, simulated crowds, agreement and annotation.

- :mod:`emofx.crowd.answers`: long-format answers (image, worker, label[, time]) from CSV
  (Mechanical Turk batch results or a plain three-column file), FER+ vote counts and the
  Taiwanese observer proportions, attached to a :class:`~emofx.data.dataset.FaceDataset`.
- :mod:`emofx.crowd.aggregate`: crowd-kit's MV, Dawid-Skene, GLAD, MACE and Wawa giving hard
  labels, label distributions, per-image agreement and entropy, per-worker quality.
- :mod:`emofx.crowd.simulate`: crowds of workers with known confusion matrices and spammers.
- :mod:`emofx.crowd.agreement`: Fleiss' kappa and Krippendorff's alpha, overall and per class.
- :mod:`emofx.crowd.annotate`: the answer log behind notebook 06 (atomic, resumable, several annotators).

crowd-kit, statsmodels and krippendorff are the optional extra ``emofx[crowd]``.
"""
