"""E4: which attention heads are the listen heads? ("top-5 listen heads at L*")

Discovery on half A of the pairs (split by a hash of the pair id): an attribution-
patching screen of every encoder head, exact patching of the best candidates, the top-5
from the exact values. Every test runs on half B. Each claim is a p-value, judged after
Holm over the claim's pre-registered grid (``listenkit.experiments.e4``).
"""

import pytest

from listenkit.experiments import e4


def _details(cell):
    details = cell.analysis.evidence(cell.section, cell.profile)
    cell.require(e4.enough_halves(cell.analysis, cell.minimum("half"), details))
    return details


@pytest.mark.claim("C6-sufficient")
def test_c6_top_heads_are_sufficient(cell):
    """C6-sufficient (E4): the top-5 encoder heads, patched together on half B, recover
    more than layer-matched random 5-head sets: sequential rank p, Holm < 0.05, and the
    bootstrap lower bound of (top-5 - 95th percentile of the random sets) > 0."""
    details = _details(cell)
    cell.require(e4.testable(cell.analysis, "recovery", cell.spec["threshold"], details))
    cell.judge(e4.set_test(cell.analysis, cell.claim, "recovery", details))


@pytest.mark.claim("C6-necessary")
def test_c6_top_heads_are_necessary(cell):
    """C6-necessary (E4): mean-ablating the top-5 heads (means from half A's clean runs)
    in the clean runs of half B lowers the metric more than layer-matched random sets:
    sequential rank p, Holm < 0.05, and the bootstrap margin's lower bound > 0."""
    details = _details(cell)
    cell.require(e4.testable(cell.analysis, "knockout", cell.spec["threshold"], details))
    cell.judge(e4.set_test(cell.analysis, cell.claim, "knockout", details))


@pytest.mark.claim("C6-at-peak")
def test_c6_top_heads_lie_at_the_listen_layer(cell):
    """C6-at-peak (E4): "top-5 listen heads at L*": the number of top-5 heads (half A) in
    layer L* (argmax of E(l) of encoder.attn_out on half B) against the hypergeometric
    null; a tie for L* or at the top-5's 5th place is inconclusive."""
    details = _details(cell)
    e4_result = cell.analysis
    cell.require(not e4_result.l_star_tied, "an exact tie for L* on half B", evidence=details)
    cell.require(not e4_result.top_tied, "an exact tie at the top-5's 5th place", evidence=details)
    cell.judge(e4.at_peak(cell.analysis, cell.claim, cell.section["top_k"], details))


@pytest.mark.claim("C6-alignment")
def test_c6_decoder_listen_heads_overlap_alignment_heads(cell):
    """C6-alignment (E4): the top-k decoder cross-attention heads (exact single-head
    effects on half A; k = the number of OpenAI's alignment heads for the checkpoint)
    overlap those more than their layers explain: stratified hypergeometric p."""
    cell.judge(e4.alignment(cell.analysis, cell.claim, _details(cell)))
