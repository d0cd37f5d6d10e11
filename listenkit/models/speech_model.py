"""``SpeechModel``: a Whisper network plus what every experiment needs.

Conventions (openai-whisper): audio is a 16 kHz mono float waveform; ``log_mel``
pads or trims the *waveform* to 30 s (480,000 samples) and then computes the
log-mel spectrogram, so every mel is ``[n_mels, 3000]``. Decoding is greedy
(temperature 0), English, transcription task, no timestamps, and applies no
token suppression.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import whisper
from whisper.tokenizer import Tokenizer, get_tokenizer

from listenkit.models.audio import MODEL_SAMPLE_RATE, as_waveform_batch

__all__ = ["SpeechModel"]

AudioInput = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]
WINDOW_SECONDS = 30.0  # Whisper's input window


class SpeechModel:
    """An openai-whisper ``Whisper`` module with batched transcribe/score helpers.

    Layers are numbered from 1 in listenkit's API; ``module.encoder.blocks[l - 1]``
    is encoder layer ``l``.
    """

    def __init__(self, *, name: str, module: whisper.model.Whisper, source: str) -> None:
        self.name = name
        self.module = module.eval()
        self.source = source
        dims = module.dims
        self.tokenizer: Tokenizer = get_tokenizer(
            module.is_multilingual,
            num_languages=module.num_languages,
            language="en" if module.is_multilingual else None,
            task="transcribe" if module.is_multilingual else None,
        )
        self.sot_sequence: tuple[int, ...] = tuple(
            self.tokenizer.sot_sequence_including_notimestamps
        )
        self.n_mels: int = dims.n_mels

    def __repr__(self) -> str:
        return (
            f"SpeechModel({self.name!r}, encoder_layers={self.encoder_layers}, "
            f"decoder_layers={self.decoder_layers}, heads={self.heads}, d_model={self.d_model}, "
            f"device={self.device}, dtype={self.dtype})"
        )

    @property
    def encoder_layers(self) -> int:
        return self.module.dims.n_audio_layer

    @property
    def decoder_layers(self) -> int:
        return self.module.dims.n_text_layer

    @property
    def heads(self) -> int:
        return self.module.dims.n_audio_head

    @property
    def d_model(self) -> int:
        return self.module.dims.n_audio_state

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    # -- front end ---------------------------------------------------------------

    def waveforms(
        self, audio: AudioInput, *, sample_rate: int = MODEL_SAMPLE_RATE, trim: bool = False
    ) -> tuple[list[np.ndarray], bool]:
        """Checked 16 kHz waveforms ``(list, single)``: audio at another ``sample_rate`` is
        resampled; audio longer than 30 s is an ``AudioError`` unless ``trim=True`` (then
        only its first 30 s are heard)."""
        return as_waveform_batch(
            audio,
            sample_rate=sample_rate,
            resample_to_model_rate=True,
            max_seconds=None if trim else WINDOW_SECONDS,
        )

    def log_mel(
        self, audio: AudioInput, *, sample_rate: int = MODEL_SAMPLE_RATE, trim: bool = False
    ) -> torch.Tensor:
        """Log-mel spectrogram: ``[n_mels, 3000]`` per waveform, ``[B, n_mels, 3000]`` for a list.

        Each waveform is padded with zeros to 30 s first (longer audio: an error unless
        ``trim=True``); the mel of each item is computed on its own (openai-whisper's
        clamp to ``max - 8`` is per spectrogram, so batching never couples items).
        ``sample_rate``: of ``audio``, in Hz (16 kHz by default; others are resampled).
        """
        waves, single = self.waveforms(audio, sample_rate=sample_rate, trim=trim)
        mels = [
            whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.tensor(w)), n_mels=self.n_mels)
            for w in waves
        ]
        mel = torch.stack(mels).to(device=self.device, dtype=self.dtype)
        return mel[0] if single else mel

    @torch.inference_mode()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Encoder output ``[B, n_audio_ctx, d_model]`` for a mel batch ``[B, n_mels, 3000]``."""
        if mel.ndim == 2:
            mel = mel[None]
        return self.module.encoder(mel.to(device=self.device, dtype=self.dtype))

    # -- text --------------------------------------------------------------------

    def text_tokens(self, text: str) -> list[int]:
        """Transcript tokens of ``text`` as Whisper writes them (leading space, stripped)."""
        text = text.strip()
        if not text:
            raise ValueError("empty transcript text")
        return self.tokenizer.encode(" " + text)

    def decode_tokens(self, tokens: Sequence[int]) -> str:
        """Text of transcript tokens (special tokens dropped), stripped."""
        eot = self.tokenizer.eot
        return self.tokenizer.decode([t for t in tokens if t < eot]).strip()

    # -- decoding ----------------------------------------------------------------

    @torch.inference_mode()
    def greedy_tokens(
        self,
        audio: AudioInput,
        *,
        max_tokens: int = 224,
        sample_rate: int = MODEL_SAMPLE_RATE,
        trim: bool = False,
    ) -> list[list[int]]:
        """Greedy transcript tokens (no start sequence, no end-of-text) per waveform.
        ``sample_rate`` and ``trim`` as in ``log_mel``."""
        waves, _ = self.waveforms(audio, sample_rate=sample_rate, trim=trim)
        return self.greedy_tokens_from_features(
            self.encode(self.log_mel(waves, trim=trim)), max_tokens=max_tokens
        )

    @torch.inference_mode()
    def greedy_tokens_from_features(
        self, audio_features: torch.Tensor, *, max_tokens: int = 224
    ) -> list[list[int]]:
        """Greedy decoding from encoder outputs ``[B, n_audio_ctx, d]``, with a kv cache."""
        batch = audio_features.shape[0]
        eot = self.tokenizer.eot
        prompt = torch.tensor([self.sot_sequence] * batch, device=self.device)
        limit = min(max_tokens, self.module.dims.n_text_ctx - len(self.sot_sequence))
        cache, hooks = self.module.install_kv_cache_hooks()
        try:
            generated: list[torch.Tensor] = []
            done = torch.zeros(batch, dtype=torch.bool, device=self.device)
            step_input = prompt
            for _ in range(limit):
                logits = self.module.decoder(step_input, audio_features, kv_cache=cache)[:, -1]
                next_token = logits.argmax(dim=-1)
                next_token = torch.where(done, torch.full_like(next_token, eot), next_token)
                generated.append(next_token)
                done |= next_token == eot
                if bool(done.all()):
                    break
                step_input = next_token[:, None]
        finally:
            for hook in hooks:
                hook.remove()
        out = torch.stack(generated, dim=1).tolist()
        return [row[: row.index(eot)] if eot in row else row for row in out]

    def transcribe(
        self,
        audio: AudioInput,
        *,
        max_tokens: int = 224,
        sample_rate: int = MODEL_SAMPLE_RATE,
        trim: bool = False,
    ) -> str | list[str]:
        """Greedy transcript: a string for one waveform, a list for a batch. ``sample_rate``
        (Hz, default 16 kHz; others are resampled) and ``trim`` as in ``log_mel``."""
        waves, single = self.waveforms(audio, sample_rate=sample_rate, trim=trim)
        tokens = self.greedy_tokens(waves, max_tokens=max_tokens, trim=trim)
        texts = [self.decode_tokens(t) for t in tokens]
        return texts[0] if single else texts

    # -- scoring -----------------------------------------------------------------

    def prompt_prefix(self, prompt: Sequence[int] | None = None) -> list[int]:
        """Decoder input before the transcript: ``[<|startofprev|>, *prompt]`` (when a
        previous-text prompt is given) followed by the start sequence."""
        if prompt is None:
            return list(self.sot_sequence)
        return [self.tokenizer.sot_prev, *prompt, *self.sot_sequence]

    @torch.inference_mode()
    def token_logprobs_from_features(
        self,
        audio_features: torch.Tensor,
        transcripts: Sequence[Sequence[int]],
        *,
        prompts: Sequence[Sequence[int] | None] | None = None,
        append_eot: bool = True,
    ) -> list[np.ndarray]:
        """Teacher-forced ``log p(token | audio, prompt, previous tokens)`` in nats (float64)
        for each transcript token and, with ``append_eot``, the final end-of-text.

        ``prompts[i]`` is an optional previous-text prompt (token ids) for item ``i``.
        """
        if audio_features.shape[0] != len(transcripts):
            raise ValueError(
                f"{audio_features.shape[0]} audio items but {len(transcripts)} transcripts"
            )
        prompts = [None] * len(transcripts) if prompts is None else list(prompts)
        if len(prompts) != len(transcripts):
            raise ValueError(f"{len(transcripts)} transcripts but {len(prompts)} prompts")
        eot = self.tokenizer.eot
        heads = [self.prompt_prefix(p) for p in prompts]
        rows = [
            h + list(t) + ([eot] if append_eot else [])
            for h, t in zip(heads, transcripts, strict=True)
        ]
        width = max(len(r) for r in rows)
        if width > self.module.dims.n_text_ctx:
            raise ValueError(
                f"prompt + transcript is {width} tokens; the decoder context is "
                f"{self.module.dims.n_text_ctx}"
            )
        padded = torch.tensor([r + [eot] * (width - len(r)) for r in rows], device=self.device)
        logits = self.module.decoder(padded[:, :-1], audio_features)
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        picked = logprobs.gather(-1, padded[:, 1:, None])[..., 0].cpu().numpy()
        return [
            picked[i, len(h) - 1 : len(r) - 1].copy()
            for i, (h, r) in enumerate(zip(heads, rows, strict=True))
        ]

    def token_logprobs(
        self,
        audio: AudioInput,
        text: str | Sequence[str],
        *,
        sample_rate: int = MODEL_SAMPLE_RATE,
        trim: bool = False,
    ) -> np.ndarray | list[np.ndarray]:
        """Per-token log-probs of ``text`` (transcript tokens then end-of-text), in nats.
        ``sample_rate`` and ``trim`` as in ``log_mel``."""
        waves, single = self.waveforms(audio, sample_rate=sample_rate, trim=trim)
        texts = [text] if isinstance(text, str) else list(text)
        if len(texts) != len(waves):
            raise ValueError(f"{len(waves)} waveforms but {len(texts)} texts")
        features = self.encode(self.log_mel(waves, trim=trim))
        with torch.inference_mode():
            values = self.token_logprobs_from_features(
                features, [self.text_tokens(t) for t in texts]
            )
        return values[0] if single else values

    def score(
        self,
        audio: AudioInput,
        text: str | Sequence[str],
        *,
        sample_rate: int = MODEL_SAMPLE_RATE,
        trim: bool = False,
    ) -> float | list[float]:
        """Teacher-forced sum log-prob (nats) of ``text``'s tokens plus end-of-text:
        ``sum_t log p(y_t | y_<t, audio)`` over the transcript tokens and the final EOT.
        ``sample_rate`` and ``trim`` as in ``log_mel``.
        """
        values = self.token_logprobs(audio, text, sample_rate=sample_rate, trim=trim)
        if isinstance(values, np.ndarray):
            return float(values.sum())
        return [float(v.sum()) for v in values]
