"""E3: does the Listen Layer shift deeper after LoRA adaptation? (claim C4)

The same evaluation pairs are swept through the model before and after adaptation
(``listenkit.experiments.e3``); the centre of mass of the positive part of the recovery
curve, ``CoM = sum l max(E(l), 0) / (N sum max(E(l), 0))``, moves by
``Delta = CoM_after - CoM_before``. A cell whose adaptation did not meet its
pre-registered success criterion is inconclusive.
"""

import pytest

from listenkit.experiments import e3


@pytest.mark.claim("C4")
def test_c4_listen_layer_shifts_deeper_after_lora(cell):
    """C4 (E3): after LoRA adaptation the recovery curve's centre of mass moves deeper:
    P_boot(CoM_after - CoM_before > 0) >= 0.95 on the same held-out pairs (paired
    bootstrap over sentences for ser-prosody, over pairs for asr-noise)."""
    spec = cell.prereg.family(cell.family)
    details = e3.evidence(cell.analysis, cell.section, spec, cell.profile)
    cell.require(e3.adapted_enough(cell.analysis, cell.minimum("n_used"), details))
    cell.judge(e3.shift(cell.analysis, details, cell.rng, cell.resamples))
