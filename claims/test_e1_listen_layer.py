"""E1 / E1b: where in the Whisper encoder is the audio consulted?

Each test is one pre-registered claim of "Localizing the Listen Layer in Speech LLMs",
run on every (model, family) cell of its grid in ``preregistration.toml``. Denoising
activation patching (Heimersheim & Nanda 2024): restore the clean run's encoder
attention output at one layer into the corrupt run and measure the recovery of the
clean run's greedy transcript log-prob, ``E(l) = sum(m_patched(l) - m_corrupt) /
sum(m_clean - m_corrupt)`` over the pairs past the signed floor
(``listenkit.experiments.e1``).
"""

import pytest

from listenkit.experiments import e1


def _required(cell, site):
    """The pre-registered minimum of pairs and the family's stimulus gate (v3)."""
    cell.require(e1.enough_pairs(cell.analysis, site, cell.minimum("n_used")))
    gate = cell.prereg.family(cell.family).get("gate_median_gap_nats")
    cell.require(e1.stimulus_gate(cell.analysis, site, gate))


@pytest.mark.claim("C1")
def test_c1_causal_peak_at_half_depth(cell):
    """C1 (Phase 1, E1): "A sharp causal peak at ~50% depth of the Whisper encoder".
    Supported iff P_boot((L* - 0.5)/N in [1/3, 2/3]) >= 0.95, L* = argmax_l E(l)."""
    site = cell.spec["site"]
    _required(cell, site)
    spec = cell.spec
    region = e1.relative_region(spec["region_relative"], cell.analysis.n_layers, spec["depth"])
    cell.judge(
        e1.peak_in_region(
            cell.analysis, site, region, "(L* - 0.5)/N in [1/3, 2/3]", cell.rng, cell.resamples
        )
    )


@pytest.mark.claim("C1-named")
def test_c1_named_listen_layer(cell):
    """C1-named (Phase 1, E1): "The Listen Layer is layer 3 in Whisper-base (3-4 in
    small, 6-7 in large)". Supported iff P_boot(L* in S) >= 0.95, S pre-registered."""
    site, region = cell.spec["site"], cell.spec["region"][cell.model]
    _required(cell, site)
    cell.judge(
        e1.peak_in_region(cell.analysis, site, region, f"L* in {region}", cell.rng, cell.resamples)
    )


@pytest.mark.claim("C1-sharp")
def test_c1_sharp_peak(cell):
    """C1-sharp (Phase 1, E1): "The peak is sharp". Cross-fitted: L* = argmax E on half A
    of the pairs (split by a hash of the pair id); supported iff L* is interior and on
    half B the simultaneous 97.5% lower bounds of E_B(L*) - E_B(l) are >= 0.1 for every
    other layer."""
    site = cell.spec["site"]
    _required(cell, site)
    defined, sharpness = e1.sharpness(
        cell.analysis,
        site,
        salt=cell.prereg["split"]["salt"],
        minimum_half=cell.minimum("half"),
        margin=cell.spec["threshold"],
        confidence=cell.spec["confidence"],
        rng=cell.rng,
        n_resamples=cell.resamples,
    )
    cell.require(defined)
    cell.judge(sharpness)


@pytest.mark.claim("C2")
def test_c2_correlational_and_causal_agree(cell):
    """C2 (E1 step 5): "Correlational (CKA, norms) and causal methods agree". Spearman's
    rho of E(l) with the 1 - CKA and norm-ratio step profiles, exact permutation p each;
    supported iff the larger p, Holm-adjusted over the grid, is < 0.05."""
    site, spec = cell.spec["site"], cell.spec
    _required(cell, site)
    grid = [
        c for c in cell.prereg.cells(cell.claim) if not cell.prereg.not_in_profile(c, cell.profile)
    ]
    cell.require(e1.attainable_under_holm(grid, cell.id, spec["threshold"]))
    moves, agreement = e1.agreement(
        cell.analysis, site, spec["definition"], spec["minimum_norm_step"]
    )
    cell.require(moves)
    cell.judge(agreement)


@pytest.mark.claim("secondary-sites")
def test_secondary_sites_and_sanity_checks(cell):
    """Reported: E(l) of every swept site, and the machinery's sanity checks, which ERROR
    when they fail: the whole-residual patch reproduces the clean metric (degenerate) and
    the base run patched into itself reproduces the base metric exactly (null)."""
    sanity, secondary = cell.prereg["sanity"], cell.section["secondary"]
    tolerances = (secondary["degenerate_tolerance_nats"], sanity["null_tolerance_nats"])
    e1.sanity_deviations(cell.analysis, *tolerances)
    cell.report(
        e1.sites_compared(
            cell.analysis,
            "encoder.attn_out",
            tolerances,
            sanity["null_check_stimuli"],
            cell.rng,
            cell.resamples,
        )
    )


@pytest.mark.claim("exploratory")
def test_exploratory_unaligned_family(cell):
    """Reported: E(l) on a family whose clean and corrupt audio are not time-aligned (joe
    vs flite slt: frames of different speech are spliced), never a claim."""
    spec = cell.prereg.family(cell.family)
    cell.report(
        e1.exploratory(cell.analysis, spec["site"], spec["description"], cell.rng, cell.resamples)
    )
