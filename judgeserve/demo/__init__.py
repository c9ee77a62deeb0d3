"""The demo: a tiny model trained on CPU until it memorizes, watched by judgeserve.

* :mod:`.run` — ``judgeserve demo``: the stack, the training, the console.
* :mod:`.data` — the synthetic corpus of made-up facts and its held-out probes.
* :mod:`.model` — the tokenizer and 3-layer GPT-2 trained from scratch (tests use it too).
* :mod:`.generator` — checkpoint mode's generator on a local Ray Serve instance.

Importing this package imports neither torch nor transformers.
"""

from .run import DemoResult, run_demo

__all__ = ["run_demo", "DemoResult"]
