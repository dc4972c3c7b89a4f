"""Tasks: what a model is trained to do.

The :class:`~charseq.train.Trainer` owns the loop (steps, the learning-rate schedule, clipping,
evaluations, checkpoints, exact resume, signals, the divergence guard); a :class:`Task` owns
what differs between kinds of training: the batches it draws from the corpus, the forward pass
and loss of one batch, and the evaluation of a split. The language model
(:class:`LanguageModelTask`, next-character prediction over streams) is today's task; many-to-one
classification (issue 20) is the second.
"""

from charseq.tasks.base import Batches, Task
from charseq.tasks.language_model import LanguageModelTask

__all__ = ["Batches", "LanguageModelTask", "Task"]
