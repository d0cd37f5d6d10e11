"""E2 / E5: how much of the decision flows through the audio stream, layer by layer?

Each test is one pre-registered claim on every (model, conflict family) cell of its grid.
Interchange interventions on audio-text conflicts (Geiger et al.): ``dA(l)`` is the share
of the audio's effect on the margin ``m = log p(a) - log p(b)`` carried by the audio
stream at layer ``l`` (block ``l``'s cross-attention keys and values), ``dT(l)`` the
share of the text channel's carried by the text stream (block ``l``'s self-attention
keys and values at the prompt positions); the listen layer ``l* = argmax dA``; ``gc =
dA / (dA + dT)`` where both streams demonstrably carry the decision
(``listenkit.experiments.e2``, pre-registration v3).
"""

import pytest

from listenkit.experiments import e2


@pytest.mark.claim("C3")
def test_c3_gc_peaks_mid_to_late(cell):
    """C3 (E2): "gc peaks sharply in mid-to-late layers (16-22 of 32 in Qwen2-Audio-7B)".
    Supported iff P_boot(l* / N in [0.5, 0.69]) >= 0.95, l* = argmax_l dA(l) (an exact
    tie: inconclusive)."""
    cell.require(e2.enough_conflicts(cell.analysis, cell.section, cell.minimum("n_used")))
    untied, peak = e2.listen_layer_in_region(
        cell.analysis, cell.section, cell.spec["region_relative"], cell.rng, cell.resamples
    )
    cell.require(untied)
    cell.judge(peak)


@pytest.mark.claim("C3-sharp")
def test_c3_sharp_gc_peak(cell):
    """C3-sharp (E2): "The gc peak is sharp". Cross-fitted: l* = argmax dA on half A;
    supported iff on half B the simultaneous 97.5% lower bound of gc_B(l*) - gc_B(l) is
    > 0 for every other layer where gc_B is defined (each failing layer named; layers
    without a defined gc are excluded and listed)."""
    cell.require(e2.enough_conflicts(cell.analysis, cell.section, cell.minimum("n_used")))
    defined, sharpness = e2.gc_sharpness(
        cell.analysis,
        cell.section,
        salt=cell.prereg["split"]["salt"],
        minimum_half=cell.minimum("half"),
        rng=cell.rng,
        n=cell.resamples,
    )
    cell.require(defined)
    cell.judge(sharpness)


@pytest.mark.claim("C5a")
def test_c5a_listen_layer_suppressed_in_failures(cell):
    """C5a (E5): "The Listen Layer is suppressed in text-dominant failures". Failures are
    conflicts with m(x) < 0; supported iff dA at l* = argmax dA is lower in failures than
    in successes within flip types: one-sided permutation p (within flip types, sentence
    pairs kept whole), Holm-adjusted over the grid, < 0.05."""
    cell.require(e2.enough_conflicts(cell.analysis, cell.section, cell.minimum("n_used")))
    defined, test = e2.suppression(
        cell.analysis,
        cell.section,
        cell.section["minimums"],
        cell.rng,
        cell.resamples,
        n_permutations=cell.section["permutations"][cell.profile],
    )
    cell.require(defined)
    cell.judge(test)


@pytest.mark.claim("C5b")
def test_c5b_failures_drop_then_recover(cell):
    """C5b (E5): "In failures, gc drops mid-layer and then recovers". Supported iff
    P_boot(exists l1 < l2 < l3: gc(l2) <= gc(l1) - 0.1, gc(l3) >= gc(l2) + 0.1) >= 0.9
    on the failures (m(x) < 0)."""
    cell.require(e2.enough_conflicts(cell.analysis, cell.section, cell.minimum("n_used")))
    defined, pattern = e2.drop_then_recover(
        cell.analysis,
        cell.section,
        cell.spec["drop"],
        cell.minimum("c5b_failures"),
        cell.rng,
        cell.resamples,
    )
    cell.require(defined)
    cell.judge(pattern)


@pytest.mark.claim("null-check")
def test_null_check(cell):
    """Sanity (ERRORS when it fails): both streams' sites patched from the base run x into
    itself reproduce m(x) exactly, at every decoder layer (Whisper only)."""
    if cell.analysis.null_deviation is None:
        pytest.skip(f"the null check runs on Whisper's decoder only, not on {cell.model}")
    sanity = cell.prereg["sanity"]
    cell.report(
        e2.null_check(cell.analysis, sanity["null_tolerance_nats"], sanity["null_check_stimuli"])
    )


@pytest.mark.claim("TDR")
def test_text_dominance_ratio_per_flip_type(cell):
    """Reported: ALME's Text Dominance Ratio (share of conflicts with m(x) < 0) per flip
    type, with the conflicts dropped or excluded per flip type."""
    cell.report(e2.dominance(cell.analysis))
