"""Model loading and encoder speed, each measured in a fresh process.

    python benchmarks/load_and_forward.py [--threads 2]

For each embedded model: first load (CTranslate2 -> openai-whisper conversion into an
empty cache), cached load, peak RSS, and the encoder forward time on one 30 s mel.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
import listenkit
t = time.perf_counter(); model = listenkit.load_model(sys.argv[1]); load_s = time.perf_counter() - t
mel = model.log_mel(torch.zeros(16000 * 30).numpy() + 0.01)
with torch.inference_mode():
    model.encode(mel)
    t = time.perf_counter()
    for _ in range(3):
        model.encode(mel)
    enc_s = (time.perf_counter() - t) / 3
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"load_s": load_s, "encoder_30s_s": enc_s, "peak_rss_mib": rss}))
"""


def run(model: str, threads: int, cache: str) -> dict:
    env = {**os.environ, "LISTENKIT_CACHE": cache}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, model, str(threads)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for model in ("whisper-tiny.en", "whisper-base"):
        with tempfile.TemporaryDirectory() as cache:
            first = run(model, args.threads, cache)
            cached = run(model, args.threads, cache)
        print(
            f"{model}: first load {first['load_s']:.2f} s, cached load {cached['load_s']:.2f} s, "
            f"encoder on a 30 s mel {cached['encoder_30s_s']:.2f} s ({args.threads} threads), "
            f"peak RSS {max(first['peak_rss_mib'], cached['peak_rss_mib']):.0f} MiB"
        )


if __name__ == "__main__":
    main()
