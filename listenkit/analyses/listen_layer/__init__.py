"""E1 / E1b: where the encoder consults the audio (``sweep`` -> ``Sweep``), and the
correlational profiles (CKA, norm ratios) to compare with."""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__)

if TYPE_CHECKING:  # the public names (read by lazy_exports, type checkers and IDEs)
    from listenkit.analyses.listen_layer.patch_sweep import METRICS, sweep
    from listenkit.analyses.listen_layer.profiles import (
        EncoderProfiles,
        encoder_profiles,
        linear_cka,
        logit_lens,
        norm_ratio,
    )
    from listenkit.analyses.listen_layer.result import Sweep
