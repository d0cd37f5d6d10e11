"""The listenkit pytest plugin (entry point ``listenkit``): pre-registered claims as tests.

A claim test is marked ``@pytest.mark.claim("<id>")`` and takes the ``cell`` fixture;
the plugin parametrises it over the claim's grid in the pre-registration
(``--preregistration``, default ``claims/preregistration.toml``), gives each cell its
identity, seeds and resamples, writes evidence and the ledger, and turns outcomes into
verdicts: passed = supported, a ``NotSupported`` (or any ``AssertionError``) = not
supported, ``cell.require`` unmet = inconclusive (an xfail), a skip = skipped,
anything else = error. It stays out of runs that do not collect the claims folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from listenkit.claims import hookspecs
from listenkit.claims.cell import Cell
from listenkit.claims.html_report import cell_block, summary_blocks
from listenkit.claims.ledger import collect_ledger, write_ledger_entry
from listenkit.claims.preregistration import CellId, Preregistration
from listenkit.claims.scheduling import scheduler
from listenkit.claims.session import ClaimsSession
from listenkit.claims.stage_adoption import origin_at, suite_sha256
from listenkit.experiments import progress
from listenkit.report.evidence import write_json_atomic
from listenkit.stage_origin import Origin

SESSION = pytest.StashKey[ClaimsSession]()
LEDGER = pytest.StashKey[dict]()
RECORD = pytest.StashKey[dict]()
WRITER = pytest.StashKey[object]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


# (short name, dest, argparse options): the plugin registers "--listenkit-<name>"; a
# suite's conftest may add the short "--<name>" with the same dest (``short_options``),
# so that no generic option name clashes with another plugin's (e.g. pytest-profiling)
OPTIONS = {
    "profile": dict(
        choices=("smoke", "full"),
        default="smoke",
        help="smoke: small stimulus sets (fast, underpowered); full: the real "
        "result (sizes in the pre-registration)",
    ),
    "models": dict(
        default=None,
        help="comma-separated models to run claims on (default: "
        "every model of the pre-registered grid)",
    ),
    "evidence-dir": dict(
        default="reports", help="where evidence, the ledger and claims.html are written"
    ),
    "fresh": dict(
        action="store_true",
        default=False,
        help="recompute every analysis, ignoring the on-disk analysis cache "
        "(entries are rewritten)",
    ),
    "adopt-stages-from": dict(
        default=None,
        metavar="COMMIT",
        help="reuse analyses an earlier commit of this checkout finished (or checkpointed) "
        "when this commit's key misses: for an amendment that changes how verdicts read "
        "them, not how they are computed; the evidence lists every adopted one",
    ),
}


def _dest(name: str) -> str:
    return "listenkit_" + name.replace("-", "_")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("listenkit", "listenkit claims")
    for name, options in OPTIONS.items():
        group.addoption(f"--listenkit-{name}", dest=_dest(name), **options)
    group.addoption(
        "--preregistration",
        default=None,
        help="the pre-registration TOML (default: ini listenkit_preregistration, "
        "else claims/preregistration.toml under the rootdir)",
    )
    parser.addini(
        "listenkit_preregistration",
        "the pre-registration TOML, from the rootdir",
        default="claims/preregistration.toml",
    )


def short_options(parser: pytest.Parser) -> None:
    """Add ``--profile``, ``--models``, ``--evidence-dir`` and ``--fresh`` as the short
    names of the ``--listenkit-*`` options (call it from a suite's ``pytest_addoption``)."""
    group = parser.getgroup("listenkit", "listenkit claims")
    for name, options in OPTIONS.items():
        group.addoption(f"--{name}", dest=_dest(name), **options)


def preregistration_path(config: pytest.Config) -> Path:
    chosen = config.getoption("preregistration") or config.getini("listenkit_preregistration")
    path = Path(chosen)
    return path if path.is_absolute() else config.rootpath / path


def runs_claims(config: pytest.Config) -> bool:
    """True when the run collects the folder of the pre-registration (the claims)."""
    path = preregistration_path(config)
    if not path.is_file():
        return False
    folder = path.parent.resolve()
    for arg in config.args:
        target = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if target == folder or folder in target.parents:
            return True
    return False


def evidence_root(config: pytest.Config) -> Path:
    root = Path(config.getoption("listenkit_evidence_dir"))
    return root if root.is_absolute() else config.invocation_params.dir / root


def _origins(config: pytest.Config) -> tuple[Origin, ...]:
    commit = config.getoption("listenkit_adopt_stages_from")
    if not commit:
        return ()
    if config.getoption("listenkit_fresh"):
        raise pytest.UsageError("--fresh recomputes every analysis: it cannot adopt stages")
    try:
        return (origin_at(config.rootpath, commit, preregistration_path(config)),)
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None


def _session(config: pytest.Config) -> ClaimsSession | None:
    return config.stash.get(SESSION, None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claim(id): a pre-registered claim or reported analysis")
    if not runs_claims(config):
        return
    prereg = Preregistration.load(preregistration_path(config))
    root = evidence_root(config)
    config.stash[SESSION] = ClaimsSession(
        config,
        prereg,
        profile=config.getoption("listenkit_profile"),
        root=root,
        fresh=config.getoption("listenkit_fresh"),
        suite_sha256=suite_sha256(config.rootpath, preregistration_path(config).parent),
        adopt=_origins(config),
        started=getattr(config, "workerinput", {}).get("listenkit_started"),
    )
    if getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"  # one analysis per worker (``scheduler``)
    # xdist would order scopes by their number of tests; the collection order (costliest
    # analysis first) is the one to keep
    config.option.loadscopereorder = False
    if not hasattr(config, "workerinput"):  # the controller cleans stale evidence once
        for name in (*prereg.claim_ids(None), "secondary", ".ledger"):
            shutil.rmtree(root / name, ignore_errors=True)
        for name in ("verdicts.json", "claims.html"):
            (root / name).unlink(missing_ok=True)
    if config.option.tbstyle == "auto":
        config.option.tbstyle = "line"  # a failing claim reads as its one-line finding
    if getattr(config.option, "htmlpath", None) is None:
        config.option.htmlpath = str(root / "claims.html")
        config.option.self_contained_html = True
    manager = config.pluginmanager.getplugin("capturemanager")

    def past_capture(text: str) -> None:
        with manager.global_and_fixture_disabled():
            progress._stderr(text)

    config.stash[WRITER] = progress.set_writer(past_capture if manager is not None else None)


def pytest_unconfigure(config: pytest.Config) -> None:
    if WRITER in config.stash:
        progress.set_writer(config.stash[WRITER])  # an outer run's writer, if any


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("claim")
    if marker is None or "cell" not in metafunc.fixturenames:
        return
    session = _session(metafunc.config)
    if session is None:
        prereg = Preregistration.load(preregistration_path(metafunc.config))
    else:
        prereg = session.prereg
    cells = prereg.cells(marker.args[0])
    metafunc.parametrize("cell", cells, ids=[c.id for c in cells], indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    session = _session(config)
    if session is None:
        return
    chosen = config.getoption("listenkit_models")
    if chosen:
        wanted = {m.strip() for m in chosen.split(",") if m.strip()}
        drop = [i for i in items if _cell_id(i) is not None and _cell_id(i).model not in wanted]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = [i for i in items if i not in drop]

    def cost(item: pytest.Item) -> float:
        cell = _cell_id(item)
        if cell is None:
            return 0.0
        if session.prereg.not_in_profile(cell, session.profile) is not None:
            return 0.0  # skipped at once: last, so no worker queues two long cells behind it
        value = config.hook.pytest_listenkit_scheduling_cost(cell=cell)
        return float(value) if value is not None else 1.0

    items.sort(key=lambda item: -cost(item))  # stable: an analysis's tests stay together


def pytest_collection_finish(session: pytest.Session) -> None:
    """The Holm families are the claim tests that run (after every deselection)."""
    claims = _session(session.config)
    if claims is not None:
        claims.register(session.items)


def _cell_id(item: pytest.Item) -> CellId | None:
    cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
    return cell if isinstance(cell, CellId) else None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Workers share the controller's start time (``--fresh``: what any worker stored
    after it is this run's)."""
    claims = _session(node.config)
    if claims is not None:
        node.workerinput["listenkit_started"] = claims.started


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.option.dist != "loadgroup" or _session(config) is None:
        return None
    return scheduler(config, log)


@pytest.fixture
def cell(request: pytest.FixtureRequest) -> Cell:
    """The claim's cell (parametrised from the pre-registration's grid)."""
    session = _session(request.config)
    if session is None:
        raise pytest.UsageError(
            "the cell fixture needs a claims run: point pytest at the folder of the "
            f"pre-registration ({preregistration_path(request.config)})"
        )
    cell_id: CellId = request.param
    this = Cell(cell_id, session)
    request.node.stash[RECORD] = this.record
    reason = session.prereg.not_in_profile(cell_id, session.profile)
    if reason:
        pytest.skip(reason)
    return this


def _verdict(report: pytest.TestReport, call: pytest.CallInfo, kind: str) -> str:
    if report.skipped and hasattr(report, "wasxfail"):
        return "inconclusive"
    if report.skipped:
        return "skipped"
    if report.passed:
        return "supported" if kind == "claim" else "reported"
    if (
        report.when == "call"
        and call.excinfo is not None
        and call.excinfo.errisinstance(AssertionError)
    ):
        return "not supported"
    return "error"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    session, cell_id = _session(item.config), _cell_id(item)
    if session is None or cell_id is None:
        return
    if not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    record = dict(item.stash.get(RECORD, {}))
    verdict = _verdict(report, call, cell_id.kind)
    entry = {
        "kind": cell_id.kind,
        "claim": cell_id.claim,
        "model": cell_id.model,
        "family": cell_id.family,
        "profile": session.profile,
        "preregistration_version": session.prereg.version,
        "verdict": verdict,
        **{k: v for k, v in record.items() if k not in ("evidence", "plot")},
    }
    if verdict in ("error", "skipped", "not supported", "inconclusive"):
        text = str(call.excinfo.value) if call.excinfo is not None else report.longreprtext
        if verdict == "skipped" and isinstance(report.longrepr, tuple):
            text = report.longrepr[2]
        if verdict == "inconclusive":
            text = report.wasxfail
        entry["message"] = text.strip().splitlines()[0][:500] if text.strip() else ""
    write_ledger_entry(session.root, entry)
    if verdict == "not supported":  # a finding: its one-line statement, not a traceback
        report.longrepr = f"finding (not supported): {entry.get('message', '')}"
    try:
        import pytest_html
    except ImportError:  # pragma: no cover - pytest-html is a dev dependency
        return
    block = cell_block(entry, session.prereg.claim(cell_id.claim), record.get("plot"))
    report.extras = [*getattr(report, "extras", []), pytest_html.extras.html(block)]


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix, summary, postfix, session) -> None:
    claims = _session(session.config)
    if claims is None:
        return
    ledger = None
    if (claims.root / ".ledger").is_dir():
        ledger = collect_ledger(
            claims.root, profile=claims.profile, preregistration_version=claims.prereg.version
        )
    prefix.extend(summary_blocks(ledger, claims.profile, str(claims.prereg.path)))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    claims = _session(session.config)
    if (
        claims is None
        or hasattr(session.config, "workerinput")
        or session.config.option.collectonly
    ):
        return
    ledger = collect_ledger(
        claims.root, profile=claims.profile, preregistration_version=claims.prereg.version
    )
    write_json_atomic(claims.root / "verdicts.json", ledger)
    session.config.stash[LEDGER] = ledger


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """The verdicts in words, after pytest's own counts (a findings-only run is not a
    broken install)."""
    ledger = config.stash.get(LEDGER, None)
    if ledger is None:
        return
    counts = {v: 0 for v in ("supported", "not supported", "inconclusive", "error", "skipped")}
    for e in ledger["claims"]:
        counts[e["verdict"]] = counts.get(e["verdict"], 0) + 1
    root = _session(config).root
    terminalreporter.write_sep("-", f"listenkit verdicts ({root / 'verdicts.json'})")
    terminalreporter.write_line(" / ".join(f"{v} {n}" for v, n in counts.items()))
    terminalreporter.write_line(
        f"'not supported' is a finding, not a failure of the code; report: {root / 'claims.html'}"
    )


@pytest.hookimpl(optionalhook=True)
def pytest_metadata(metadata: dict, config: pytest.Config) -> None:
    """The report's environment box: what shapes the numbers, not just pytest plugins."""
    claims = _session(config)
    if claims is None:
        return
    import importlib.metadata
    import os

    import torch

    from listenkit.claims.session import git_commit
    from listenkit.report.evidence import environment

    versions = environment()
    metadata["listenkit"] = f"{versions.get('listenkit')} (commit {git_commit(config.rootpath)})"
    for name in (
        "torch",
        "openai-whisper",
        "nnsight",
        "numpy",
        "scipy",
        "piper-tts",
        "transformers",
        "peft",
        "praat-parselmouth",
    ):
        try:
            metadata[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            metadata[name] = "not installed"
    gpu = f" (CUDA: {torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else " (no GPU)"
    metadata["device"] = str(getattr(config.option, "device", "cpu")) + gpu
    metadata["CPU threads"] = f"{torch.get_num_threads()} of {os.cpu_count()} cores"
    metadata["profile"] = claims.profile
    metadata["pre-registration"] = (
        f"version {claims.prereg.version}, sha256 {claims.prereg.sha256[:12]}"
    )
