"""Statistics over per-stimulus effects (rows = stimuli, columns = layers).

Pure numpy/scipy: importing it loads neither torch nor whisper. One resampling core
(``resampling``: bootstrap over stimuli with an explicit Generator, one NaN-safe
argmax whose ties go to the lowest layer) under every statistic.
"""

from listenkit.stats.agreement import change_point, correlational_agreement
from listenkit.stats.curves import Curve, bootstrap_curve, resampled_means
from listenkit.stats.grounding import (
    GroundingCurves,
    bootstrap_grounding,
    drop_and_recover,
    gc_cross_fitted_sharpness,
    gc_group_difference_test,
    grounding_coefficient,
    probability_drop_and_recover,
)
from listenkit.stats.peaks import (
    Peak,
    bootstrap_argmax,
    peak_location,
    probability_in,
)
from listenkit.stats.ratio import RatioOfMeans, as_ratio
from listenkit.stats.resampling import (
    nan_argmax,
    percentile_interval,
    resample_counts,
    seeded_generator,
)
from listenkit.stats.sharpness import cross_fitted_sharpness, max_t_lower_bounds, split_halves
from listenkit.stats.shift import ShiftTest, centre_of_mass, paired_shift
from listenkit.stats.significance import (
    SequentialP,
    holm,
    hypergeometric_overlap,
    rank_p_value,
    sequential_p_value,
    stratified_hypergeometric_overlap,
)

__all__ = [
    "Curve",
    "GroundingCurves",
    "Peak",
    "RatioOfMeans",
    "SequentialP",
    "ShiftTest",
    "as_ratio",
    "bootstrap_argmax",
    "bootstrap_curve",
    "bootstrap_grounding",
    "centre_of_mass",
    "change_point",
    "correlational_agreement",
    "cross_fitted_sharpness",
    "drop_and_recover",
    "gc_cross_fitted_sharpness",
    "gc_group_difference_test",
    "grounding_coefficient",
    "holm",
    "hypergeometric_overlap",
    "max_t_lower_bounds",
    "nan_argmax",
    "paired_shift",
    "peak_location",
    "percentile_interval",
    "probability_drop_and_recover",
    "probability_in",
    "rank_p_value",
    "resample_counts",
    "resampled_means",
    "seeded_generator",
    "sequential_p_value",
    "split_halves",
    "stratified_hypergeometric_overlap",
]
