"""Many-to-one: classifying whole texts with any cell.

A spec whose ``task`` is ``classify`` makes :meth:`Pipeline.fit <charseq.Pipeline.fit>` train a
:class:`~charseq.classify.model.TextClassifier` on labelled texts, with the language model's
trainer and checkpoints (:mod:`charseq.classify.training`, :mod:`charseq.classify.task`);
:meth:`Pipeline.predict <charseq.Pipeline.predict>` labels texts.

- :mod:`charseq.classify.data`: labelled data (TSV, CSV, JSONL, a folder of one file per label)
  and the stratified split;
- :mod:`charseq.classify.model`: the model (embedding, any cells, pooling, a linear head);
- :mod:`charseq.classify.metrics`: accuracy, macro-F1, per-class scores, the confusion matrix;
- :mod:`charseq.classify.baseline`: a bag-of-character-n-grams logistic regression to compare
  with;
- :mod:`charseq.classify.probe`: a language model's states as features, and the one unit that
  separates the classes best (``charseq probe``).
"""
