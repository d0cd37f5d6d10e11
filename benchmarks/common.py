"""What every model benchmark starts with: ``--model`` and ``--threads``, a loaded model."""

from __future__ import annotations

import argparse

import numpy as np
import torch

import listenkit


def model_from_args(
    parser: argparse.ArgumentParser,
) -> tuple[argparse.Namespace, listenkit.SpeechModel]:
    """Add ``--model`` (default whisper-base) and ``--threads`` (default 2) to ``parser``,
    parse, set torch's thread count and load the model (offline)."""
    parser.add_argument("--model", default="whisper-base")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args, listenkit.load_model(args.model)


def warm_up(model: listenkit.SpeechModel, audio: np.ndarray) -> None:
    """One encoder pass, so that the first timed run does not pay for allocation."""
    with torch.inference_mode():
        model.encode(model.log_mel(audio))
