"""Many-to-one: classifying whole texts with any cell (issue 20).

Labelled data (:mod:`charseq.classify.data`), metrics and the n-gram baseline
(:mod:`charseq.classify.metrics`, :mod:`charseq.classify.baseline`) and the probe of a language
model's states (:mod:`charseq.classify.probe`) live here.
"""
