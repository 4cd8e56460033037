"""Processes pfkit owns: the ``pfkit`` command, batch worker processes, ``flow serve`` workers
and the test server's process. :func:`claim_process` (called first thing in each) marks the
process as pfkit's and tunes it; a user's own process (a notebook, a script calling
``pfkit.cli.main([...])`` or ``pfkit.run``, an app mounting ``pfkit.serve.app``) is never
claimed, and keeps its own settings and promptflow's per-call isolation.

What a claimed process does differently:

* **Garbage collection.** A batch line or a served request allocates a few hundred objects, so
  with CPython's default threshold (a young-generation collection every 700 net allocations)
  the collector runs every line or two. The threshold is raised (about 2% less CPU per model
  call in an LLM-bound batch, for a few MB more of short-lived cycles between collections).
* **A resident flow** (:func:`owned`): a batch run keeps its flow's folder, ``sys.path`` entry
  and environment applied from its first line to its last (``engine.resident``) instead of
  switching them in and out around every line (a fifth of a quick python line's cost); other
  flows still switch the process as usual, and the state is restored when the run ends.
"""

from __future__ import annotations

import gc

GC_THRESHOLD = (20_000, 50, 50)  # young, middle, old (CPython's default: 700, 10, 10)

_claimed = False


def claim_process() -> None:
    """This process is pfkit's own (see the module docstring): fewer, larger garbage
    collections (objects alive now, imports and a loaded flow, are moved out of the
    collector's way), and runs keep their flow applied."""
    global _claimed
    _claimed = True
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def owned() -> bool:
    """Whether :func:`claim_process` was called in this process."""
    return _claimed


__all__ = ["GC_THRESHOLD", "claim_process", "owned"]
