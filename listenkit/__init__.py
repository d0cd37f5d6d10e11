"""listenkit: executable hypothesis tests for claims about speech models.

The pipeline, one subpackage per stage (data flows one way; lower stages never
import higher ones):

- ``models``: load real weights offline, validate audio (``load_model``, ``SpeechModel``)
- ``stimuli``: minimal pairs, conflicts and the claim families
- ``engine``: sites, site tables, batches, metrics, hooks and nnsight backends
- ``analyses``: one package per experiment (``listen_layer`` E1, ``grounding`` E2/E5)
- ``stats``: the resampling core and the statistics the claims use (numpy only)
- ``planted``: models with a known answer, for testing the machinery
- ``report``: evidence files, plots, the command line

Top-level names are imported lazily: ``import listenkit`` loads neither torch nor
whisper until a name that needs them is used.
"""

from typing import TYPE_CHECKING

from listenkit._lazy import lazy_exports
from listenkit._version import __version__

__getattr__, __dir__, _names = lazy_exports(__name__)
__all__ = [*_names, "__version__"]

if TYPE_CHECKING:  # the public names (read by lazy_exports, type checkers and IDEs)
    from listenkit.analyses.grounding.whisper import GroundingSweep, grounding_sweep
    from listenkit.analyses.listen_layer.patch_sweep import sweep
    from listenkit.analyses.listen_layer.result import Sweep
    from listenkit.engine.sites import COMPONENTS, DegenerateSiteWarning, Site, SiteError
    from listenkit.models.audio import AudioError
    from listenkit.models.cache import CacheWarning
    from listenkit.models.ctranslate2 import CT2FormatError
    from listenkit.models.loading import ModelNotAvailableError, known_model_names, load_model
    from listenkit.models.speech_model import SpeechModel
