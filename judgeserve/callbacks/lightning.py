"""A Lightning ``Callback`` with the behaviour of the Hugging Face one.

::

    from judgeserve.callbacks.lightning import JudgeLightningCallback

    trainer = L.Trainer(callbacks=[JudgeLightningCallback("probes.jsonl", tokenizer=tok)])

The LightningModule must hold a transformers causal LM (``model_attr``, default
``"model"``; the module itself when it has ``generate``). Every ``every_n_steps``
optimizer steps the callback generates completions of the probe set and submits them;
every ``trainer.log_every_n_steps`` it forwards the training loss and the learning
rate; on a ``stop`` alert it sets ``trainer.should_stop``. Aggregates are logged back to
every logger of the trainer (W&B, TensorBoard, CSV ...) as ``judgeserve/<metric>``.

In checkpoint mode (``mode="checkpoint"``) the callback generates nothing: it uploads
the probe set at train start and, whenever the trainer saves a checkpoint
(``on_save_checkpoint``: ``ModelCheckpoint`` or ``trainer.save_checkpoint``), writes the
transformers model beside it in the form the generator loads — ``save_pretrained`` of
the PEFT adapter (milliseconds) or of the whole model — into
``<checkpoint dir>/judgeserve/step-<N>`` and submits that folder; with
``checkpoint_save="background"`` it only copies the weights into memory there and a
thread writes and submits the folder (:mod:`judgeserve.callbacks.snapshot`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..exceptions import MissingExtraError
from ..probes import Probe
from .runner import ProbeOptions, ProbeRunner

try:
    import lightning.pytorch as pl
except ImportError:  # the standalone package
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError as e:
        raise MissingExtraError("lightning", "train") from e

__all__ = ["JudgeLightningCallback"]

log = logging.getLogger("judgeserve.callbacks")


class JudgeLightningCallback(pl.Callback):
    """Probe the model every N steps, submit to judgeserve, stop on ``stop`` alerts."""

    def __init__(
        self,
        probes: str | Path | Sequence[Probe | dict[str, Any] | str],
        *,
        tokenizer: Any = None,
        model_attr: str = "model",
        on_validation: bool = False,
        options: ProbeOptions | None = None,
        **probe_options: Any,
    ) -> None:
        """``tokenizer``: the model's (needed to generate; not in checkpoint mode).
        ``options`` / ``probe_options``: see :class:`~judgeserve.callbacks.runner.ProbeOptions`
        (``mode``, ``every_n_steps``, ``client``, ``url``, ``run``, ``max_new_tokens`` ...)."""
        super().__init__()
        self.runner = ProbeRunner(probes, options, **probe_options)
        if tokenizer is None and self.runner.mode == "generate":
            raise ValueError("JudgeLightningCallback needs tokenizer= to generate (or mode='checkpoint')")
        self.tokenizer = tokenizer
        self.model_attr = model_attr
        self.on_validation_probe = on_validation
        self.stopped_at: int | None = None
        self._metric_steps: set[int] = set()

    def _model(self, pl_module: Any) -> Any:
        if hasattr(pl_module, "generate"):
            return pl_module
        model = getattr(pl_module, self.model_attr, None)
        if model is None or not hasattr(model, "generate"):
            raise ValueError(
                f"JudgeLightningCallback: {type(pl_module).__name__}.{self.model_attr} is not a "
                "model with generate(); set model_attr="
            )
        return model

    def _probe(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero:
            self.runner.probe(trainer.global_step, self._model(pl_module), self.tokenizer)

    def _log_back(self, trainer: Any, final: bool = False) -> None:
        if not self.runner.log_back or not trainer.is_global_zero:
            return
        for step, metrics in self.runner.take_aggregates(final).items():
            row = {f"judgeserve/{m}": v for m, v in metrics.items()}
            for logger in trainer.loggers:
                logger.log_metrics(row, step=step)

    # -- Callback hooks ----------------------------------------------------------------------

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        if not trainer.loggers:
            self.runner.log_back = False  # nowhere to log to: do not poll for aggregates
        name = getattr(trainer.logger, "name", None) if trainer.logger else None
        self.runner.start(default_run=name or trainer.default_root_dir)
        if self.runner.due(trainer.global_step):
            self._probe(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not trainer.is_global_zero:
            return
        step = trainer.global_step
        every = max(int(getattr(trainer, "log_every_n_steps", 50) or 1), 1)
        if step % every == 0 and step not in self._metric_steps:
            self._metric_steps.add(step)
            values: dict[str, Any] = {}
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None and hasattr(loss, "item"):
                values["loss"] = loss.detach().float().item()
            if trainer.optimizers:
                values["learning_rate"] = trainer.optimizers[0].param_groups[0]["lr"]
            self.runner.log_metrics(step, values)
        if self.runner.due(step):
            self._probe(trainer, pl_module)
        self._log_back(trainer)
        if self.runner.should_stop and not trainer.should_stop:
            alert = self.runner.stop_alert
            assert alert is not None
            log.warning("judgeserve: stopping training at step %d on alert %s (%s)",
                        step, alert.rule, alert.message)
            trainer.should_stop = True
            self.stopped_at = step

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self.runner.mode != "checkpoint" or not trainer.is_global_zero:
            return
        step = trainer.global_step
        if step in self.runner.probed:
            return
        folder = os.path.join(self.export_dir(trainer), f"step-{step}")
        if self.runner.options.checkpoint_save == "background":
            # Copied now, written and submitted by a thread (judgeserve.callbacks.snapshot).
            model = self._model(pl_module)
            tokenizer = None if hasattr(model, "peft_config") else self.tokenizer
            self.runner.save_checkpoint(step, model, folder, tokenizer)
            return
        # A Lightning .ckpt is no model folder a generator can load: write one beside it.
        self._model(pl_module).save_pretrained(folder)
        self.runner.submit_checkpoint(step, folder)

    @staticmethod
    def export_dir(trainer: Any) -> str:
        """Where checkpoint mode writes the folders it submits."""
        callback = getattr(trainer, "checkpoint_callback", None)
        root = getattr(callback, "dirpath", None) or trainer.default_root_dir
        return os.path.join(root, "judgeserve")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.on_validation_probe and not trainer.sanity_checking:
            self._probe(trainer, pl_module)
        if trainer.is_global_zero and not trainer.sanity_checking:
            values = {
                k: v.item() if hasattr(v, "item") else v
                for k, v in trainer.callback_metrics.items()
                if k.startswith("val")
            }
            self.runner.log_metrics(trainer.global_step, values)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        if self.runner.probe_at_end and self.runner.mode == "generate":
            self._probe(trainer, pl_module)
        self.runner.close()
        self._log_back(trainer, final=True)
