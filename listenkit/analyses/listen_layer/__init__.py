"""E1 / E1b: where the encoder consults the audio (``sweep`` -> ``Sweep``), and the
correlational profiles (CKA, norm ratios) to compare with."""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports

_EXPORTS = {
    "METRICS": "listenkit.analyses.listen_layer.patch_sweep",
    "sweep": "listenkit.analyses.listen_layer.patch_sweep",
    "Sweep": "listenkit.analyses.listen_layer.result",
    "EncoderProfiles": "listenkit.analyses.listen_layer.profiles",
    "encoder_profiles": "listenkit.analyses.listen_layer.profiles",
    "linear_cka": "listenkit.analyses.listen_layer.profiles",
    "logit_lens": "listenkit.analyses.listen_layer.profiles",
    "norm_ratio": "listenkit.analyses.listen_layer.profiles",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = [
    "METRICS",
    "EncoderProfiles",
    "Sweep",
    "encoder_profiles",
    "linear_cka",
    "logit_lens",
    "norm_ratio",
    "sweep",
]

if TYPE_CHECKING:
    from listenkit.analyses.listen_layer.patch_sweep import METRICS, sweep
    from listenkit.analyses.listen_layer.profiles import (
        EncoderProfiles,
        encoder_profiles,
        linear_cka,
        logit_lens,
        norm_ratio,
    )
    from listenkit.analyses.listen_layer.result import Sweep
