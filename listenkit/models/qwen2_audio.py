"""Qwen2-Audio without a model hub: inputs built in code, local weights, tiny random configs.

``AudioLM`` wraps transformers' ``Qwen2AudioForConditionalGeneration``. Inputs follow
Qwen2-Audio-7B-Instruct's chat template, written here token by token so that every
position is known:

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n
    Audio 1: <|audio_bos|> <|AUDIO|> x n_audio <|audio_eos|>\\n
    The transcript may read: {context}\\nTranscribe the audio exactly.<|im_end|>\\n
    <|im_start|>assistant\\n{answer}

``n_audio`` is the audio encoder's output length for the clip (``feature_attention_mask``
counts the clip's mel frames). The audio positions are the placeholders; the
text-context positions are the tokens of ``{context}``. Layers are numbered from 1
over ``model.model.language_model.layers``.

Weights: ``load_qwen2_audio()`` reads the directory in ``$LISTENKIT_QWEN2_AUDIO``
(config, safetensors, tokenizer; ``local_files_only``), in bf16 by default, on
``device`` or spread over GPUs with accelerate's ``device_map``. ``tiny_qwen2_audio()``
builds a small random model (Whisper's GPT-2 byte-level BPE as its tokenizer) for
testing the machinery only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from listenkit.models.audio import MODEL_SAMPLE_RATE, as_waveform

__all__ = [
    "QWEN2_AUDIO_ENV",
    "AudioLM",
    "ChatTokens",
    "LMInput",
    "Qwen2AudioNotConfiguredError",
    "load_qwen2_audio",
    "tiny_qwen2_audio",
    "tiny_qwen2_audio_config",
]

QWEN2_AUDIO_ENV = "LISTENKIT_QWEN2_AUDIO"
SYSTEM = "You are a helpful assistant."
CONTEXT_LEAD = "\nThe transcript may read: "
INSTRUCTION = "\nTranscribe the audio exactly."
MAX_SECONDS = 30.0


class Qwen2AudioNotConfiguredError(RuntimeError):
    """No local Qwen2-Audio weights: ``$LISTENKIT_QWEN2_AUDIO`` is unset or incomplete."""


@dataclass(frozen=True)
class ChatTokens:
    """The tokenizer's ``encode`` (no special tokens added) and the chat's special ids."""

    encode: Callable[[str], list[int]]
    im_start: int
    im_end: int
    audio_bos: int
    audio_eos: int
    audio: int  # the placeholder, expanded to one token per audio-encoder output frame
    pad: int


@dataclass(frozen=True, kw_only=True)
class LMInput:
    """One run: token rows (one per scored continuation) and the clip's features."""

    input_ids: torch.Tensor  # [rows, width], right-padded
    attention_mask: torch.Tensor  # [rows, width]
    input_features: torch.Tensor  # [rows, n_mels, 3000]
    feature_attention_mask: torch.Tensor  # [rows, 3000]
    score_masks: torch.Tensor  # [rows, width - 1] float: sign where token t+1 is scored
    audio_positions: tuple[int, ...]
    context_positions: tuple[int, ...]


class AudioLM:
    """A Qwen2-Audio model with the chat template and feature extraction in code."""

    def __init__(self, *, name: str, module, tokens: ChatTokens, feature_extractor) -> None:
        self.name = name
        self.module = module.eval()
        self.tokens = tokens
        self.feature_extractor = feature_extractor
        self.n_mels = int(module.config.audio_config.num_mel_bins)

    def __repr__(self) -> str:
        return f"AudioLM({self.name!r}, layers={self.n_layers})"

    @property
    def n_layers(self) -> int:
        return int(self.module.config.text_config.num_hidden_layers)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def text_tokens(self, text: str) -> list[int]:
        """Tokens of ``text`` as written in the context and the answer (no leading space)."""
        text = text.strip()
        if not text:
            raise ValueError("empty text")
        return list(self.tokens.encode(text))

    def features(self, audio: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(input_features [n_mels, 3000], feature_attention_mask [3000], n_audio)``."""
        wave = as_waveform(audio, sample_rate=MODEL_SAMPLE_RATE, what="audio")
        if wave.size > MAX_SECONDS * MODEL_SAMPLE_RATE:
            raise ValueError(
                f"audio is {wave.size / MODEL_SAMPLE_RATE:.1f} s; Qwen2-Audio takes <= 30 s"
            )
        out = self.feature_extractor(
            wave,
            sampling_rate=MODEL_SAMPLE_RATE,
            return_attention_mask=True,
            padding="max_length",
            return_tensors="pt",
        )
        mask = out["attention_mask"][0]
        frames = int(mask.sum())
        _, n_audio = self.module.model.audio_tower._get_feat_extract_output_lengths(
            torch.tensor(frames)
        )
        return out["input_features"][0], mask, int(n_audio)

    def prompt_ids(self, n_audio: int, context: Sequence[int]) -> tuple[list[int], range, range]:
        """Token ids up to the answer, with the audio and context position ranges."""
        t, enc = self.tokens, self.tokens.encode
        head = [t.im_start, *enc("system\n" + SYSTEM), t.im_end, *enc("\n"), t.im_start]
        head += [*enc("user\nAudio 1: "), t.audio_bos]
        audio = range(len(head), len(head) + n_audio)
        ids = head + [t.audio] * n_audio + [t.audio_eos, *enc(CONTEXT_LEAD)]
        context_range = range(len(ids), len(ids) + len(context))
        ids += [*context, *enc(INSTRUCTION), t.im_end, *enc("\n"), t.im_start]
        ids += enc("assistant\n")
        return ids, audio, context_range

    def build(
        self,
        audio: np.ndarray,
        context: Sequence[int],
        rows: Sequence[tuple[Sequence[int], int, float]],
        *,
        pad_to_samples: int | None = None,
    ) -> LMInput:
        """A run: ``rows`` are ``(answer tokens, scored from, sign)``; the answer follows
        the prompt and its tokens ``[from:]`` are scored (teacher forced) with ``sign``.
        ``pad_to_samples`` pads the clip with silence so that two clips line up."""
        wave = as_waveform(audio, sample_rate=MODEL_SAMPLE_RATE, what="audio")
        if pad_to_samples is not None:
            if pad_to_samples < wave.size:
                raise ValueError(f"cannot pad {wave.size} samples to {pad_to_samples}")
            wave = np.pad(wave, (0, pad_to_samples - wave.size))
        feats, fmask, n_audio = self.features(wave)
        prompt, audio_pos, context_pos = self.prompt_ids(n_audio, context)
        seqs = [prompt + list(answer) for answer, _, _ in rows]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(rows), width), self.tokens.pad, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        score = torch.zeros((len(rows), width - 1), dtype=torch.float64)
        for r, (seq, (answer, start, sign)) in enumerate(zip(seqs, rows, strict=True)):
            if not 0 <= start < len(answer):
                raise ValueError(f"scored start {start} outside an answer of {len(answer)} tokens")
            ids[r, : len(seq)] = torch.tensor(seq)
            attn[r, : len(seq)] = 1
            score[r, len(prompt) + start - 1 : len(seq) - 1] = sign
        return LMInput(
            input_ids=ids,
            attention_mask=attn,
            input_features=feats[None].expand(len(rows), -1, -1).clone(),
            feature_attention_mask=fmask[None].expand(len(rows), -1).clone(),
            score_masks=score,
            audio_positions=tuple(audio_pos),
            context_positions=tuple(context_pos),
        )

    def forward_kwargs(self, run: LMInput) -> dict[str, torch.Tensor]:
        device = self.device
        return {
            "input_ids": run.input_ids.to(device),
            "attention_mask": run.attention_mask.to(device),
            "input_features": run.input_features.to(device, self.module.dtype),
            "feature_attention_mask": run.feature_attention_mask.to(device),
        }

    @staticmethod
    def metric(logits: torch.Tensor, run: LMInput) -> float:
        """``sum_rows sign * sum_scored log p(token)`` (nats) from ``[rows, width, vocab]``."""
        logprobs = torch.log_softmax(logits.double(), dim=-1)[:, :-1]
        targets = run.input_ids[:, 1:, None].to(logprobs.device)
        picked = logprobs.gather(-1, targets)[..., 0].cpu()
        value = float((picked * run.score_masks).sum())
        if not np.isfinite(value):
            raise FloatingPointError("non-finite margin from the model's logits")
        return value


def _feature_extractor(n_mels: int, directory: Path | None = None):
    from transformers import WhisperFeatureExtractor

    if directory is not None and (directory / "preprocessor_config.json").is_file():
        return WhisperFeatureExtractor.from_pretrained(directory, local_files_only=True)
    return WhisperFeatureExtractor(feature_size=n_mels)


def load_qwen2_audio(
    directory: str | Path | None = None,
    *,
    dtype: torch.dtype = torch.bfloat16,
    device: str = "cpu",
    device_map: str | dict | None = None,
) -> AudioLM:
    """Qwen2-Audio(-7B-Instruct) from a local directory (default ``$LISTENKIT_QWEN2_AUDIO``).

    ``device_map="auto"`` spreads the layers over the visible GPUs (needs accelerate).
    Never downloads: a missing directory or file is a ``Qwen2AudioNotConfiguredError``.
    """
    directory = directory or os.environ.get(QWEN2_AUDIO_ENV)
    if not directory:
        raise Qwen2AudioNotConfiguredError(
            f"set {QWEN2_AUDIO_ENV}=<local directory> holding Qwen2-Audio-7B-Instruct "
            "(config.json, *.safetensors, tokenizer and preprocessor files), e.g. from "
            "`huggingface-cli download Qwen/Qwen2-Audio-7B-Instruct --local-dir DIR`"
        )
    path = Path(directory)
    missing = [n for n in ("config.json", "tokenizer_config.json") if not (path / n).is_file()]
    if missing:
        raise Qwen2AudioNotConfiguredError(f"{path} lacks {', '.join(missing)}")
    from transformers import AutoTokenizer, Qwen2AudioForConditionalGeneration

    options: dict = {"local_files_only": True, "dtype": dtype}
    if device_map is not None:
        options["device_map"] = device_map
    module = Qwen2AudioForConditionalGeneration.from_pretrained(path, **options)
    if device_map is None:
        module = module.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    ids = tokenizer.convert_tokens_to_ids
    tokens = ChatTokens(
        encode=lambda text: tokenizer.encode(text, add_special_tokens=False),
        im_start=ids("<|im_start|>"),
        im_end=ids("<|im_end|>"),
        audio_bos=ids("<|audio_bos|>"),
        audio_eos=ids("<|audio_eos|>"),
        audio=int(module.config.audio_token_id),
        pad=int(
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids("<|endoftext|>")
        ),
    )
    n_mels = int(module.config.audio_config.num_mel_bins)
    return AudioLM(
        name=f"qwen2-audio:{path.name}",
        module=module,
        tokens=tokens,
        feature_extractor=_feature_extractor(n_mels, path),
    )


def tiny_qwen2_audio_config(
    *, vocab_size: int, audio_token_id: int, n_layers: int = 4, hidden: int = 32,
    init_std: float = 0.02,
):  # fmt: skip
    """A small ``Qwen2AudioConfig``: 2-layer audio encoder (128 mels, 30 s), tiny Qwen2 LM."""
    from transformers import Qwen2AudioConfig

    return Qwen2AudioConfig(
        audio_config={
            "d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64, "num_mel_bins": 128, "max_source_positions": 1500,
        },
        text_config={
            "model_type": "qwen2", "vocab_size": vocab_size, "hidden_size": hidden,
            "intermediate_size": 2 * hidden, "num_hidden_layers": n_layers,
            "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 2048, "initializer_range": init_std,
        },
        audio_token_id=audio_token_id,
    )  # fmt: skip


def tiny_qwen2_audio(
    *, n_layers: int = 4, hidden: int = 32, seed: int = 0, init_std: float = 0.02
) -> AudioLM:
    """A small random Qwen2-Audio (real transformers code path) for machinery tests.

    The tokenizer is Whisper's GPT-2 byte-level BPE (bundled with openai-whisper);
    the five chat/audio special tokens take ids after its 50,257 tokens.
    """
    from transformers import Qwen2AudioForConditionalGeneration
    from whisper.tokenizer import get_encoding

    encoding = get_encoding("gpt2")
    base = encoding.n_vocab
    im_start, im_end, audio_bos, audio, audio_eos = range(base, base + 5)
    config = tiny_qwen2_audio_config(
        vocab_size=base + 5, audio_token_id=audio, n_layers=n_layers, hidden=hidden,
        init_std=init_std,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):  # seeded init; the global RNG is left alone
        torch.manual_seed(seed)
        module = Qwen2AudioForConditionalGeneration(config).float().eval()
    tokens = ChatTokens(
        encode=lambda text: encoding.encode(text),
        im_start=im_start,
        im_end=im_end,
        audio_bos=audio_bos,
        audio_eos=audio_eos,
        audio=audio,
        pad=encoding.eot_token,
    )
    return AudioLM(
        name=f"tiny-qwen2-audio-L{n_layers}-s{seed}",
        module=module,
        tokens=tokens,
        feature_extractor=_feature_extractor(128),
    )
