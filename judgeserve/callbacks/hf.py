"""A Hugging Face ``TrainerCallback`` that hands probe completions to judgeserve.

::

    from judgeserve.callbacks.hf import JudgeCallback

    trainer = Trainer(..., callbacks=[JudgeCallback("probes.jsonl", every_n_steps=200)])

Every ``every_n_steps`` (and, if asked, at each evaluation or checkpoint save) the
callback generates completions of the probe set from the model being trained and
submits them with the step (and the checkpoint's path on save). In checkpoint mode
(``mode="checkpoint"``) it generates nothing: it uploads the probe set at train start
and, on each save, submits the folder the Trainer just wrote (``checkpoint-<step>``: for a
PEFT model, the adapter), and judgeserve's generator completes the probes from it::

    JudgeCallback("probes.jsonl", mode="checkpoint")   # with TrainingArguments(save_steps=200)

With ``checkpoint_save="background"`` the callback saves every ``every_n_steps`` itself
instead (into ``<output_dir>/judgeserve/step-<N>``): the trainer waits only while the
weights are copied into memory; a thread writes and then submits the folder
(:mod:`judgeserve.callbacks.snapshot`). The trainer's own saves are then for resuming.

With ``keep_best=True`` the callback keeps judgeserve's best checkpoint: the Trainer's
``save_total_limit`` rotation spares ``state.best_model_checkpoint``, which the callback
points at the folder of the best checkpoint (``GET /v1/runs/{run}/best``, polled by the
watcher thread) before each save, and at train end it logs the best step and folder
(``callback.best``, ``callback.best_checkpoint``)::

    JudgeCallback("probes.jsonl", mode="checkpoint", keep_best=True)  # save_total_limit=2

Every ``on_log`` it
forwards the trainer's numbers (loss, learning rate ...). A watcher thread polls the
run's open alerts; when one whose rule says ``action: stop`` appears, the callback sets
``control.should_training_stop`` at the end of the next step. When W&B or TensorBoard
is among ``report_to``, scored aggregates are logged there as ``judgeserve/<metric>``.

Only the main process (``state.is_world_process_zero``) probes and submits.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..exceptions import require
from ..probes import Probe
from .runner import ProbeOptions, ProbeRunner

require("transformers", "train")

from transformers import (  # noqa: E402
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR  # noqa: E402

__all__ = ["JudgeCallback"]

log = logging.getLogger("judgeserve.callbacks")


class JudgeCallback(TrainerCallback):
    """Probe the model every N steps, submit to judgeserve, stop on ``stop`` alerts."""

    def __init__(
        self,
        probes: str | Path | Sequence[Probe | dict[str, Any] | str],
        *,
        tokenizer: Any = None,
        on_evaluate: bool = False,
        on_save: bool = False,
        keep_best: bool = False,
        options: ProbeOptions | None = None,
        **probe_options: Any,
    ) -> None:
        """
        Args:
            probes: a JSONL probe file, or probes / dicts / prompt strings.
            tokenizer: used when the trainer has no ``processing_class``.
            on_evaluate / on_save: also probe after each evaluation / checkpoint save
                (generate mode; in checkpoint mode every save is submitted).
            keep_best: keep judgeserve's best checkpoint from ``save_total_limit``'s
                rotation, and report it at train end (refused beside the Trainer's own
                ``metric_for_best_model``, which sets the same ``best_model_checkpoint``).
            options, probe_options: when and how to probe, submit and watch alerts
                (:class:`~judgeserve.callbacks.runner.ProbeOptions`: ``mode``,
                ``every_n_steps``, ``client``, ``url``, ``run``, ``max_new_tokens``,
                ``stop_on_alert`` ...), as one object and/or keyword arguments.
        """
        self.runner = ProbeRunner(probes, options, **probe_options)
        self.on_evaluate_probe = on_evaluate
        self.on_save_probe = on_save
        self.tokenizer = tokenizer
        self.keep_best = keep_best
        self.runner.watch_best = keep_best
        self.best: dict[str, Any] | None = None  # GET /v1/runs/{run}/best at train end
        self.best_checkpoint: str | None = None  # its folder, when it was kept
        self.stopped_at: int | None = None
        self._tb: Any = None
        self._report_to: list[str] = []

    # -- helpers -----------------------------------------------------------------------------

    def _tokenizer(self, kwargs: dict[str, Any]) -> Any:
        tok = self.tokenizer or kwargs.get("processing_class") or kwargs.get("tokenizer")
        if tok is None:
            raise ValueError("JudgeCallback needs a tokenizer: pass tokenizer=... or give the "
                             "Trainer a processing_class")
        return getattr(tok, "tokenizer", tok)  # a multimodal processor wraps one

    def _probe(self, state: TrainerState, kwargs: dict[str, Any], checkpoint: str | None = None) -> None:
        if not state.is_world_process_zero or kwargs.get("model") is None:
            return
        self.runner.probe(state.global_step, kwargs["model"], self._tokenizer(kwargs), checkpoint)

    def _check_stop(self, state: TrainerState, control: TrainerControl) -> None:
        if self.runner.should_stop and not control.should_training_stop:
            alert = self.runner.stop_alert
            assert alert is not None
            log.warning("judgeserve: stopping training at step %d on alert %s (%s)",
                        state.global_step, alert.rule, alert.message)
            control.should_training_stop = True
            self.stopped_at = state.global_step

    def _log_back(self, state: TrainerState, final: bool = False) -> None:
        if not self.runner.log_back or not state.is_world_process_zero:
            return
        aggregates = self.runner.take_aggregates(final)
        if not aggregates:
            return
        if "wandb" in self._report_to:
            wandb = sys.modules.get("wandb")
            if wandb is not None and wandb.run is not None:
                for step, metrics in aggregates.items():
                    wandb.log({**{f"judgeserve/{m}": v for m, v in metrics.items()},
                               "train/global_step": step})
        if self._tb is not None:
            for step, metrics in aggregates.items():
                for m, v in metrics.items():
                    self._tb.add_scalar(f"judgeserve/{m}", v, global_step=step)
            self._tb.flush()

    def _best_folder(self, args: TrainingArguments) -> str | None:
        step = self.runner.best_step
        if step is None:
            return None
        if self.runner.options.checkpoint_save == "background":  # judgeserve's own folders
            path = os.path.join(args.output_dir or ".", "judgeserve", f"step-{step}")
        else:
            path = os.path.join(args.output_dir or ".", f"{PREFIX_CHECKPOINT_DIR}-{step}")
        return path if os.path.isdir(path) else None

    def _protect_best(self, args: TrainingArguments, state: TrainerState) -> None:
        # Trainer._save_checkpoint (after this step's callbacks) rotates with
        # rotate_checkpoints(best_model_checkpoint=state.best_model_checkpoint), which
        # never deletes that folder; sort_checkpoints at train end spares it too.
        if self.keep_best and state.is_world_process_zero:
            path = self._best_folder(args)
            if path is not None:
                state.best_model_checkpoint = path

    def _report_best(self, args: TrainingArguments) -> None:
        self.best = self.runner.best
        best_step = self.runner.best_step
        if best_step is None:
            why = (self.best or {}).get("reason") or "no checkpoint scored yet"
            log.warning("judgeserve: no best checkpoint at train end: %s", why)
            return
        self.best_checkpoint = self._best_folder(args)
        ranked = {c["step"] for c in (self.best or {}).get("checkpoints", [])}
        pending = sorted(set(self.runner.probed) - ranked)
        where = (f"kept at {self.best_checkpoint}" if self.best_checkpoint
                 else "its folder is not in output_dir")
        log.warning(
            "judgeserve: best checkpoint is step %d, %s%s", best_step, where,
            f" ({len(pending)} later checkpoint(s) not scored yet: {pending})" if pending else "",
        )

    # -- TrainerCallback events --------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        if self.keep_best and args.metric_for_best_model:
            raise ValueError(
                "keep_best=True sets state.best_model_checkpoint to judgeserve's best "
                f"checkpoint; metric_for_best_model={args.metric_for_best_model!r} "
                "(load_best_model_at_end) sets it too: use one of them"
            )
        self.runner.start(default_run=args.run_name or args.output_dir)
        self._report_to = list(args.report_to or [])
        if not {"wandb", "tensorboard"} & set(self._report_to):
            self.runner.log_back = False  # nowhere to log to: do not poll for aggregates
        if self.runner.log_back and "tensorboard" in self._report_to:
            from torch.utils.tensorboard import SummaryWriter

            root = os.getenv("TENSORBOARD_LOGGING_DIR") or os.path.join(args.output_dir or ".", "runs")
            self._tb = SummaryWriter(log_dir=os.path.join(root, "judgeserve"))
        if self.runner.due(state.global_step):
            self._probe(state, kwargs)

    def _save_in_background(self, args: TrainingArguments, state: TrainerState, kwargs: dict[str, Any]) -> None:
        model = kwargs.get("model")
        if not state.is_world_process_zero or model is None:
            return
        folder = os.path.join(args.output_dir or ".", "judgeserve", f"step-{state.global_step}")
        # A full model's folder carries its tokenizer, as the trainer's own save would.
        tokenizer = None if hasattr(model, "peft_config") else (
            self.tokenizer or kwargs.get("processing_class") or kwargs.get("tokenizer"))
        self.runner.save_checkpoint(state.global_step, model, folder, tokenizer)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.runner.due(state.global_step):
            self._probe(state, kwargs)
        if self.runner.save_due(state.global_step):
            self._save_in_background(args, state, kwargs)
        self._log_back(state)
        self._check_stop(state, control)
        self._protect_best(args, state)

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._protect_best(args, state)  # an epoch-end save rotates too

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs and state.is_world_process_zero:
            self.runner.log_metrics(state.global_step, logs)

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.on_evaluate_probe:
            self._probe(state, kwargs)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # The folder Trainer._save_checkpoint has just written (and not rotated away).
        path = os.path.join(args.output_dir or ".", f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        if self.runner.mode == "checkpoint" and self.runner.options.checkpoint_save == "background":
            return  # judgeserve saves its own (on_step_end); the trainer's are for resuming
        if self.runner.mode == "checkpoint":
            if state.is_world_process_zero:
                self.runner.submit_checkpoint(state.global_step, path)
        elif self.on_save_probe:
            self._probe(state, kwargs, checkpoint=path)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        if self.runner.probe_at_end and self.runner.mode == "generate":
            self._probe(state, kwargs)
        if (self.runner.probe_at_end and self.runner.mode == "checkpoint"
                and self.runner.options.checkpoint_save == "background"):
            self._save_in_background(args, state, kwargs)  # the final weights (once)
        self.runner.close()  # waits for a write in flight, then submits it
        if self.keep_best:
            self._report_best(args)
        self._log_back(state, final=True)
        if self._tb is not None:
            self._tb.close()
            self._tb = None
