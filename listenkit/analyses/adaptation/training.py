"""Training recipes for E3: a prosody head (frozen encoder or LoRA) and LoRA for noisy ASR.

- ``train_prosody``: cross-entropy of ``ProsodyHead`` on the encoder output pooled
  over the speech frames; with a ``LoraSpec`` the adapters and the head train
  jointly, without one the encoder is frozen (the "before" probe: the same head,
  recipe and seed on features computed once).
- ``train_asr``: LoRA on the encoder under the ordinary ASR loss, the teacher-forced
  cross-entropy ``-(1/T) sum_t log p(y_t | y_<t, audio)`` of the transcript tokens and
  end-of-text after the start sequence, the decoder frozen.

Both use AdamW (constant or linearly decaying learning rate), ``steps`` minibatches of
``batch_size`` drawn epoch by epoch from a ``numpy`` permutation seeded by ``seed``,
and log the training loss per step and the validation metric every ``eval_every``
steps (and at the end). Everything is seeded; the training examples' mel
spectrograms are computed once. With a ``TrainingCheckpoint`` a killed run resumes at
its last checkpoint, bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace

import jiwer
import numpy as np
import torch
from torch import nn

from listenkit.analyses.adaptation.checkpoint import TrainingCheckpoint
from listenkit.analyses.adaptation.lora import LoraSpec, adapted_model, attach_lora
from listenkit.analyses.adaptation.readout import ProsodyHead, pooled, speech_frames
from listenkit.engine.wer import normalize_text
from listenkit.models.speech_model import SpeechModel
from listenkit.stimuli.types import Utterance

__all__ = [
    "Recipe",
    "TrainingLog",
    "accuracies_of",
    "accuracy",
    "accuracy_of",
    "adapted",
    "asr_loss",
    "corpus_wer",
    "train_asr",
    "train_probes",
    "train_prosody",
]

StepProgress = Callable[[int, int], None] | None


@dataclass(frozen=True)
class Recipe:
    """Optimiser settings (AdamW; ``schedule`` constant or linear decay to 0); ``head_lr``
    for the head (0: the same as ``lr``)."""

    lr: float
    steps: int
    batch_size: int
    seed: int
    head_lr: float = 0.0
    weight_decay: float = 0.0
    eval_every: int = 10
    schedule: str = "constant"  # or "linear": lr * (1 - (step - 1) / steps) at step 1..steps

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("need steps >= 0, batch_size >= 1, eval_every >= 1")
        if self.schedule not in ("constant", "linear"):
            raise ValueError(f"schedule must be 'constant' or 'linear', got {self.schedule!r}")
        if not (self.lr > 0 and self.head_lr >= 0):
            raise ValueError("need lr > 0 and head_lr >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainingLog:
    """Loss per step; ``(step, value)`` of the validation metric; wall time in seconds."""

    metric: str
    loss: list[float] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    examples: int = 0  # examples seen (steps x batch size)

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "loss": [round(x, 6) for x in self.loss],
            "validation": [[s, round(v, 6)] for s, v in self.validation],
            "seconds": round(self.seconds, 2),
            "examples": self.examples,
            "examples_per_s": round(self.examples_per_s, 4),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TrainingLog:
        return cls(
            metric=data["metric"],
            loss=list(data["loss"]),
            validation=[(int(s), float(v)) for s, v in data["validation"]],
            seconds=float(data["seconds"]),
            examples=int(data["examples"]),
        )


def _scheduler(optimiser: torch.optim.Optimizer, recipe: Recipe):
    """Multiplies every group's learning rate by ``1 - (step - 1) / steps`` (linear) or 1."""
    if recipe.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda k: 1.0 - k / max(1, recipe.steps))


def _batches(n: int, recipe: Recipe) -> Iterator[np.ndarray]:
    rng = np.random.default_rng([recipe.seed, 1])
    order: list[int] = []
    for _ in range(recipe.steps):
        if len(order) < recipe.batch_size:
            order += rng.permutation(n).tolist()
        batch, order = order[: recipe.batch_size], order[recipe.batch_size :]
        yield np.asarray(batch)


def _run_steps(n, recipe, optimiser, step_loss, validate, log, progress, checkpoint=None) -> float:
    """The loop both recipes share: validate at step 0, then ``recipe.steps`` seeded
    minibatches (AdamW step, schedule step), logging the loss per step and the
    validation metric every ``eval_every`` steps and at the end. With a
    ``TrainingCheckpoint``: resume from it when it holds this recipe's state, and save
    every ``checkpoint.every`` steps. Returns the seconds spent before the resume."""
    schedule = _scheduler(optimiser, recipe)
    params = [p for group in optimiser.param_groups for p in group["params"]]
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None and not _fits(state, recipe, params):
        state = None  # another recipe's or shape's state: start over
    done, before_s, rng = 0, 0.0, None
    if state is None:
        log.validation.append((0, validate()))
    else:
        with torch.no_grad():
            for p, saved in zip(params, state["params"], strict=True):
                p.copy_(saved)
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        log.loss = [float(x) for x in state["loss"]]
        log.validation = [(int(s), float(v)) for s, v in state["validation"]]
        log.examples = int(state["examples"])
        done, before_s, rng = int(state["step"]), float(state["seconds"]), state["rng"]
        if progress is not None and hasattr(progress, "resume"):
            progress.resume(done)
    started = time.perf_counter()
    with _seeded(recipe.seed):
        if rng is not None:
            torch.set_rng_state(rng)
        for step, idx in enumerate(_batches(n, recipe), start=1):
            if step <= done:
                continue  # taken before the resume (the permutation is seeded)
            loss = step_loss(torch.as_tensor(idx))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss is {value} at step {step}")
            log.loss.append(value)
            log.examples += len(idx)
            if step % recipe.eval_every == 0 or step == recipe.steps:
                log.validation.append((step, validate()))
            if checkpoint is not None and step % checkpoint.every == 0 and step < recipe.steps:
                checkpoint.save({
                    "recipe": recipe.to_dict(), "step": step,
                    "params": [p.detach().clone() for p in params],
                    "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                    "rng": torch.get_rng_state(), "loss": list(log.loss),
                    "validation": [[s, v] for s, v in log.validation],
                    "examples": log.examples,
                    "seconds": before_s + time.perf_counter() - started,
                })  # fmt: skip
            if progress is not None:
                progress(step, recipe.steps)
    return before_s


def _fits(state: Mapping, recipe: Recipe, params: Sequence[torch.Tensor]) -> bool:
    saved = state.get("params", [])
    return (
        state.get("recipe") == recipe.to_dict()
        and len(saved) == len(params)
        and all(a.shape == b.shape for a, b in zip(saved, params, strict=True))
    )


def _check(utterances: Sequence[Utterance], what: str, label: bool) -> None:
    if not utterances:
        raise ValueError(f"no {what} utterances")
    if label and any("label" not in u.meta for u in utterances):
        raise ValueError(f"{what} utterances need meta['label'] (a class index)")


def _head(model: SpeechModel, n_classes: int, seed: int) -> ProsodyHead:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ProsodyHead(model.d_model, n_classes).to(model.device)


@torch.inference_mode()
def _encode_all(
    encoder, model: SpeechModel, utterances, batch_size: int, progress: StepProgress = None
) -> torch.Tensor:
    """Pooled encoder output ``[n, d]`` of every utterance; ``progress(done, n)`` after
    every batch."""
    out = []
    for start in range(0, len(utterances), batch_size):
        chunk = utterances[start : start + batch_size]
        feats = encoder(model.log_mel([u.audio for u in chunk]))
        out.append(pooled(feats, [speech_frames(u.audio.size) for u in chunk]))
        if progress is not None:
            progress(start + len(chunk), len(utterances))
    return torch.cat(out)


def accuracy(logits: torch.Tensor, labels: Sequence[int]) -> float:
    return float((logits.argmax(-1).cpu() == torch.as_tensor(list(labels))).float().mean())


def accuracy_of(
    model: SpeechModel, head: ProsodyHead, utterances: Sequence[Utterance], *, batch_size: int = 8
) -> float:
    """Accuracy of ``head`` on ``model``'s pooled encoder output (labels in ``meta``)."""
    return accuracies_of(model, {"head": head}, utterances, batch_size=batch_size)["head"]


def accuracies_of(
    model: SpeechModel,
    heads: Mapping[str, ProsodyHead],
    utterances: Sequence[Utterance],
    *,
    batch_size: int = 8,
    progress: StepProgress = None,
) -> dict[str, float]:
    """``accuracy_of`` for several heads, from one pass over the utterances
    (``progress(done, n)`` after every batch)."""
    _check(utterances, "evaluation", True)
    features = _encode_all(model.module.encoder, model, utterances, batch_size, progress)
    labels = [int(u.meta["label"]) for u in utterances]
    with torch.no_grad():
        return {name: accuracy(head.linear(features), labels) for name, head in heads.items()}


def train_probes(
    model: SpeechModel,
    train: Sequence[Utterance],
    validation: Sequence[Utterance],
    recipe: Recipe,
    *,
    n_classes: int,
    seeds: Sequence[int],
    progress: StepProgress = None,
    feature_progress: StepProgress = None,
) -> list[tuple[ProsodyHead, TrainingLog]]:
    """Linear probes on ``model``'s frozen encoder, one per seed: ``recipe`` with its
    ``seed`` replaced (the head's initialisation and the minibatch order), the head's
    learning rate ``head_lr or lr``, on pooled features computed once. Each log's
    ``seconds`` is the feature pass plus that probe's own steps. ``progress`` gets each
    probe's (step, steps); ``feature_progress`` (utterances done, training + validation
    utterances) during the feature pass."""
    _check(train, "training", True)
    _check(validation, "validation", True)
    start = time.perf_counter()
    encoder = model.module.encoder
    total = len(train) + len(validation)

    def shifted(offset: int) -> StepProgress:
        if feature_progress is None:
            return None
        return lambda done, _n: feature_progress(offset + done, total)

    x_train = _encode_all(encoder, model, train, recipe.batch_size, shifted(0)).clone()
    x_val = _encode_all(encoder, model, validation, recipe.batch_size, shifted(len(train)))
    x_val = x_val.clone()
    features_s = time.perf_counter() - start
    labels = torch.as_tensor([int(u.meta["label"]) for u in train])
    val_labels = [int(u.meta["label"]) for u in validation]
    probes = []
    for seed in seeds:
        start = time.perf_counter()
        seeded = replace(recipe, seed=int(seed))
        head = _head(model, n_classes, seeded.seed)
        log = TrainingLog(metric="validation accuracy")
        optimiser = torch.optim.AdamW(head.parameters(), lr=recipe.head_lr or recipe.lr,
                                      weight_decay=recipe.weight_decay)  # fmt: skip

        def step_loss(idx, head=head):
            return nn.functional.cross_entropy(head.linear(x_train[idx]), labels[idx])

        def validate(head=head):
            with torch.no_grad():
                return accuracy(head.linear(x_val), val_labels)

        _run_steps(len(train), seeded, optimiser, step_loss, validate, log, progress)
        log.seconds = features_s + time.perf_counter() - start
        head.eval()
        probes.append((head, log))
    return probes


def train_prosody(
    model: SpeechModel,
    train: Sequence[Utterance],
    validation: Sequence[Utterance],
    recipe: Recipe,
    *,
    n_classes: int,
    lora: LoraSpec | None,
    progress: StepProgress = None,
    checkpoint: TrainingCheckpoint | None = None,
):
    """``(peft_encoder or None, head, log)``; the log's validation metric is accuracy.
    Without ``lora`` the encoder is frozen (``train_probes`` with the recipe's seed).
    ``checkpoint``: resume from it and save to it (``TrainingCheckpoint``)."""
    if lora is None:
        ((head, log),) = train_probes(model, train, validation, recipe, n_classes=n_classes,
                                      seeds=[recipe.seed], progress=progress)  # fmt: skip
        return None, head, log
    _check(train, "training", True)
    _check(validation, "validation", True)

    start = time.perf_counter()
    head = _head(model, n_classes, recipe.seed)
    labels = torch.as_tensor([int(u.meta["label"]) for u in train])
    val_labels = [int(u.meta["label"]) for u in validation]
    log = TrainingLog(metric="validation accuracy")
    peft_encoder = attach_lora(model, lora, seed=recipe.seed)
    mels = model.log_mel([u.audio for u in train])
    frames = [speech_frames(u.audio.size) for u in train]
    params = [p for p in peft_encoder.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        [{"params": params, "lr": recipe.lr},
         {"params": head.parameters(), "lr": recipe.head_lr or recipe.lr}],
        weight_decay=recipe.weight_decay,
    )  # fmt: skip

    def step_loss(idx):
        feats = peft_encoder(mels[idx])
        return nn.functional.cross_entropy(head(feats, [frames[i] for i in idx]), labels[idx])

    def validate():
        peft_encoder.eval()
        x_val = _encode_all(peft_encoder, model, validation, recipe.batch_size)
        peft_encoder.train()
        with torch.no_grad():
            return accuracy(head.linear(x_val), val_labels)

    before_s = _run_steps(
        len(train), recipe, optimiser, step_loss, validate, log, progress, checkpoint
    )
    log.seconds = before_s + time.perf_counter() - start
    head.eval()
    peft_encoder.eval()
    return peft_encoder, head, log


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """No gradients into ``module``'s parameters while training (restored after)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def _token_batch(model: SpeechModel, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens [B, T], mask [B, T-1])``: start sequence + transcript + EOT, padded with
    EOT; the mask selects the predicted transcript and EOT positions."""
    sot, eot = list(model.sot_sequence), model.tokenizer.eot
    rows = [sot + model.text_tokens(t) + [eot] for t in texts]
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), eot, dtype=torch.long)
    mask = torch.zeros(len(rows), width - 1)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.as_tensor(r)
        mask[i, len(sot) - 1 : len(r) - 1] = 1.0
    return tokens.to(model.device), mask.to(model.device)


def asr_loss(model: SpeechModel, encoder, mel: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
    """Teacher-forced cross-entropy per predicted token (nats), decoder as given."""
    tokens, mask = _token_batch(model, texts)
    logits = model.module.decoder(tokens[:, :-1], encoder(mel))
    nll = nn.functional.cross_entropy(
        logits.transpose(1, 2).float(), tokens[:, 1:], reduction="none"
    )
    return (nll * mask).sum() / mask.sum()


def corpus_wer(
    model: SpeechModel, utterances: Sequence[Utterance], *, batch_size: int = 8
) -> float:
    """Corpus WER (sum of errors / sum of reference words, Whisper-normalised) of greedy
    transcripts."""
    hyps: list[str] = []
    for start in range(0, len(utterances), batch_size):
        hyps += model.transcribe([u.audio for u in utterances[start : start + batch_size]])
    refs = [normalize_text(u.text) for u in utterances]
    return float(jiwer.wer(refs, [normalize_text(h) or "<empty>" for h in hyps]))


def train_asr(
    model: SpeechModel,
    train: Sequence[Utterance],
    validation: Sequence[Utterance],
    recipe: Recipe,
    *,
    lora: LoraSpec,
    progress: StepProgress = None,
    checkpoint: TrainingCheckpoint | None = None,
):
    """``(peft_encoder, log)``; the log's validation metric is the teacher-forced loss
    (nats per token) on the validation utterances. ``checkpoint``: resume from it and
    save to it (``TrainingCheckpoint``)."""
    _check(train, "training", False)
    _check(validation, "validation", False)

    start = time.perf_counter()
    peft_encoder = attach_lora(model, lora, seed=recipe.seed)
    mels = model.log_mel([u.audio for u in train])
    val_mels = model.log_mel([u.audio for u in validation])
    texts = [u.text for u in train]
    params = [p for p in peft_encoder.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    log = TrainingLog(metric="validation loss (nats/token)")

    def validate() -> float:
        peft_encoder.eval()
        total = 0.0
        with torch.no_grad():
            for s in range(0, len(validation), recipe.batch_size):
                chunk = validation[s : s + recipe.batch_size]
                loss = asr_loss(model, peft_encoder, val_mels[s : s + len(chunk)],
                                [u.text for u in chunk])  # fmt: skip
                total += float(loss) * len(chunk)
        peft_encoder.train()
        return total / len(validation)

    def step_loss(idx):
        return asr_loss(model, peft_encoder, mels[idx], [texts[i] for i in idx.tolist()])

    with _frozen(model.module.decoder):
        before_s = _run_steps(
            len(train), recipe, optimiser, step_loss, validate, log, progress, checkpoint
        )
    log.seconds = before_s + time.perf_counter() - start
    peft_encoder.eval()
    return peft_encoder, log


def adapted(model: SpeechModel, peft_encoder, family: str) -> SpeechModel:
    """The adapted model for patching (LoRA merged into a copy of the encoder)."""
    return adapted_model(model, peft_encoder, name=f"{model.name}+lora-{family}")
