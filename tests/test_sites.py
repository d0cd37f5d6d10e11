"""Sites as data: validation, messages, JSON."""

from __future__ import annotations

import json

import pytest

from listenkit import COMPONENTS, DegenerateSiteWarning, Site, SiteError


def test_unknown_component_lists_the_valid_ones():
    with pytest.raises(SiteError) as info:
        Site(component="encoder.attention")
    for component in COMPONENTS:
        assert component in str(info.value)


def test_layer_out_of_range_names_the_valid_range():
    with pytest.raises(SiteError, match=r"valid layers are 1\.\.6"):
        Site(component="encoder.attn_out", layer=7).layers(6)
    with pytest.raises(SiteError, match="numbered from 1"):
        Site(component="encoder.attn_out", layer=0)


def test_heads_are_checked():
    with pytest.raises(SiteError, match="needs heads"):
        Site(component="encoder.head", layer=1)
    with pytest.raises(SiteError, match="only applies"):
        Site(component="encoder.mlp_out", heads=(1,))
    with pytest.raises(SiteError, match=r"valid heads are 0\.\.7"):
        Site(component="encoder.head", heads=(8,)).check(n_layers=6, n_heads=8)


def test_whole_residual_warns_that_it_is_degenerate():
    with pytest.warns(DegenerateSiteWarning, match="sanity check"):
        Site(component="encoder.resid").check(n_layers=6, n_heads=8)
    Site(component="encoder.resid", positions=(1, 2)).check(n_layers=6, n_heads=8)  # no warning


@pytest.mark.parametrize(
    "site",
    [
        Site(component="encoder.attn_out"),
        Site(component="encoder.head", layer=3, heads=(0, 5)),
        Site(component="decoder.resid", positions="prompt"),
        Site(component="encoder.resid", layer=2, positions=(0, 10, 20)),
    ],
    ids=["sweep", "heads", "named-positions", "positions"],
)
def test_sites_round_trip_through_json(site):
    again = Site.from_dict(json.loads(site.to_json()))
    assert again == site
    assert hash(again) == hash(site)


def test_sites_are_frozen_and_keyword_only():
    site = Site(component="encoder.mlp_out", layer=2)
    with pytest.raises(AttributeError):
        site.layer = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Site("encoder.mlp_out")  # type: ignore[misc]


def test_claims_are_scheduled_by_module_and_parameters():
    from listenkit.claims.scheduling import claim_scope

    e1 = "claims/test_e1_listen_layer.py::test_c1_sharp_peak[whisper-base-noise]"
    assert claim_scope(e1) == "claims/test_e1_listen_layer.py[whisper-base-noise]"
    other = (
        "claims/test_e1_listen_layer.py::test_c2_correlational_and_causal_agree[whisper-base-noise]"
    )
    assert claim_scope(other) == claim_scope(e1)
    e2 = "claims/test_e2_grounding.py::test_c3_gc_peaks_mid_to_late[whisper-base-noise]"
    assert claim_scope(e2) != claim_scope(e1)
    assert claim_scope("tests/test_sites.py::test_x") == "tests/test_sites.py::test_x"


def test_costly_analyses_are_scheduled_first():
    from types import SimpleNamespace

    from fixtures.analyses import pytest_listenkit_scheduling_cost as cost

    def cell(experiment: str, model: str) -> SimpleNamespace:
        return SimpleNamespace(experiment=experiment, model=model)

    e3_tiny, e1_tiny = cost(cell("e3", "whisper-tiny.en")), cost(cell("e1", "whisper-tiny.en"))
    e1_base, e2_tiny = cost(cell("e1", "whisper-base")), cost(cell("e2", "whisper-tiny.en"))
    assert e3_tiny > e1_base > e1_tiny
    assert e1_tiny == e2_tiny
