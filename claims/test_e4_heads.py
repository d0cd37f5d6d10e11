"""E4: which attention heads are the listen heads? ("top-5 listen heads at L*")

Single-head denoising effects ``E(l, h)`` (ratio of means over the pairs past the signed
floor) rank the heads on half A of the pairs; every test runs on half B (split by a hash
of the pair id). Each claim is a p-value, judged after Holm across its cells
(``listenkit.experiments.e4``).
"""

import pytest

from listenkit.experiments import e4


def _details(cell):
    details = cell.analysis.evidence(cell.section, cell.profile)
    cell.require(e4.enough_halves(cell.analysis, cell.minimum("half"), details))
    return details


@pytest.mark.claim("C6-sufficient")
def test_c6_top_heads_are_sufficient(cell):
    """C6-sufficient (E4): the top-5 encoder heads (ranked on half A), patched together on
    half B, recover more than random 5-head sets: rank p (R random sets), Holm < 0.05."""
    cell.judge(e4.set_test(cell.analysis, cell.claim, "recovery", _details(cell)))


@pytest.mark.claim("C6-necessary")
def test_c6_top_heads_are_necessary(cell):
    """C6-necessary (E4): mean-ablating the top-5 heads in the clean runs of half B lowers
    the clean metric more than random 5-head sets: rank p, Holm < 0.05."""
    cell.judge(e4.set_test(cell.analysis, cell.claim, "knockout", _details(cell)))


@pytest.mark.claim("C6-at-peak")
def test_c6_top_heads_lie_at_the_listen_layer(cell):
    """C6-at-peak (E4): "top-5 listen heads at L*": the number of top-5 heads in layer L*
    (argmax of E(l) of encoder.attn_out on half A) against the hypergeometric null."""
    cell.judge(e4.at_peak(cell.analysis, cell.claim, cell.section["top_k"], _details(cell)))


@pytest.mark.claim("C6-alignment")
def test_c6_decoder_listen_heads_overlap_alignment_heads(cell):
    """C6-alignment (E4): the top-k decoder cross-attention heads (ranked on half A by
    their single-head effect; k = the number of OpenAI's alignment heads for the
    checkpoint) overlap those more than chance: hypergeometric p, Holm < 0.05."""
    cell.judge(e4.alignment(cell.analysis, cell.claim, _details(cell)))
