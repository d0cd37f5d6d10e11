"""Command line: ``listenkit sweep``, ``listenkit gc`` and ``listenkit report``.

    listenkit sweep --model whisper-base --family noise --site encoder.attn_out --out DIR
    listenkit sweep --model whisper-base --audio MY_WAVS/ --corrupt noise:0 --out DIR

writes ``DIR/sweep.csv`` (per stimulus and layer), ``DIR/sweep.json``,
``DIR/curve.csv`` (mean and 95% CI per layer) and ``DIR/curve.png``.

    listenkit gc --model whisper-base --family conflict-noisy --per-flip-type 10 --out DIR

writes ``DIR/gc.json`` (per-stimulus margins of every run), ``DIR/gc_curve.csv``
(dA, dT and gc per decoder layer with 95% CIs; empty gc = undefined) and ``DIR/gc.png``.

    listenkit report reports/verdicts.json --markdown
    listenkit report OLD/verdicts.json NEW/verdicts.json --compare
    listenkit report results/2026-11-27-full results/2026-12-03-v3-e2-full --compare --markdown
    listenkit report results/2026-11-27-full --html

print the verdict matrix as Markdown, or the cells whose verdict changed (with
``--markdown``: both versions side by side, each change with its reasons).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

import listenkit
from listenkit.analyses.grounding.margins import text_dominance_ratio
from listenkit.analyses.grounding.whisper import grounding_sweep
from listenkit.engine.site_tables import OPENAI_WHISPER
from listenkit.report.evidence import write_json_atomic
from listenkit.report.ledger_table import (
    compare_ledgers,
    load_ledger,
    markdown_matrix,
    merge_ledgers,
)
from listenkit.report.plots import plot_grounding, plot_layer_claim
from listenkit.report.publish import publish_run
from listenkit.stats.grounding import bootstrap_grounding
from listenkit.stimuli.families import (
    CONFLICT_FAMILIES,
    DEFAULT_FAMILIES,
    UNALIGNED_FAMILIES,
    conflict_family,
    family_pairs,
)

__all__ = ["build_parser", "main"]

DEFAULT_PREREGISTRATION = "claims/preregistration.toml"


def _own_pairs(args: argparse.Namespace) -> tuple[str, list]:
    """``--audio DIR`` (with ``--corrupt``) or ``--pairs-manifest FILE``: a label and pairs."""
    from listenkit.stimuli.loaders import load_wav_txt_folder
    from listenkit.stimuli.own_audio import load_pairs_manifest, noisy_pairs_from, parse_corruption

    if args.pairs_manifest:
        return f"pairs of {args.pairs_manifest}", load_pairs_manifest(args.pairs_manifest)
    kind, snr = parse_corruption(args.corrupt)
    utterances = load_wav_txt_folder(args.audio)
    for u in utterances:
        if "resampled_from_hz" in u.meta or "downmixed_from_channels" in u.meta:
            notes = ", ".join(
                f"{k.replace('_', ' ')} {v}" for k, v in u.meta.items()
                if k in ("resampled_from_hz", "downmixed_from_channels")
            )  # fmt: skip
            print(f"{u.id}: {notes} (to 16 kHz mono)", file=sys.stderr)
    return f"{args.audio} + {kind} noise at {snr:g} dB", noisy_pairs_from(
        utterances, snr, kind, seed=args.seed
    )


def _sweep_command(args: argparse.Namespace) -> int:
    if args.audio and args.pairs_manifest:
        print("give --audio DIR or --pairs-manifest FILE, not both", file=sys.stderr)
        return 2
    try:
        if args.audio or args.pairs_manifest:
            label, pairs = _own_pairs(args)
        else:
            label = args.family
            pairs = list(family_pairs(DEFAULT_FAMILIES[args.family], args.pairs, seed=args.seed))
    except (OSError, ValueError) as err:  # missing transcript, unreadable audio, bad spec
        print(f"listenkit sweep: {err}", file=sys.stderr)
        return 2
    model = listenkit.load_model(args.model)
    result = listenkit.sweep(
        model,
        pairs,
        args.site,
        reference=args.reference,
        mode=args.mode,
        floor=args.floor,
        batch_size=args.batch_size,
        progress=not args.quiet,
        allow_unaligned=args.family in UNALIGNED_FAMILIES,
    )
    if args.family in UNALIGNED_FAMILIES:
        print(
            f"{args.family}: clean and corrupt are not time-aligned; frames of different "
            "speech are spliced (exploratory, not a result)",
            file=sys.stderr,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.to_csv(out / "sweep.csv")
    result.to_json(out / "sweep.json")
    if not result.included.any():
        print(f"all {len(result.ids)} pairs excluded by the floor; no curve", file=sys.stderr)
        return 1
    curve = result.curve(seed=args.seed, n_resamples=args.resamples)
    with open(out / "curve.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["layer", "mean", "ci_low", "ci_high", "n"])
        writer.writeheader()
        writer.writerows(curve.to_records())
    plot_layer_claim(
        out / "curve.png",
        curve,
        title=f"{args.site} {args.model} {label} ({args.mode}, n={curve.n})",
    )
    peak = curve.layers[int(np.argmax(curve.mean))]
    print(
        f"{args.model} {label} {args.site}: n used {curve.n}, excluded "
        f"{len(result.excluded_ids)}, peak layer {peak}; wrote {out}"
    )
    return 0


def _own_conflicts(args: argparse.Namespace, model) -> list:
    """The conflicts of ``--conflicts`` (ALME JSONL, audio under ``--audio-root``), those
    whose flip the model's tokenizer cannot align set aside (and said)."""
    from listenkit.stimuli.conflict import align_flip
    from listenkit.stimuli.loaders import load_alme_jsonl

    path = Path(args.conflicts)
    stimuli = load_alme_jsonl(path, args.audio_root or path.parent)
    missing = [s.stimulus_id for s in stimuli if s.conflict_audio is None]
    if missing:
        raise ValueError(
            f"{path}: {len(missing)} record(s) without conflict_audio_path (e.g. "
            f"{missing[0]!r}): Whisper's audio-stream patch needs a recording of conflict_text"
        )
    usable = []
    for s in stimuli:
        aligned = align_flip(s.ref_text, s.conflict_text, model.text_tokens)
        if aligned.aligned:
            usable.append(s)
        else:
            print(f"{s.stimulus_id}: set aside ({aligned.reason})", file=sys.stderr)
    if not usable:
        raise ValueError(f"{path}: no record's flip aligns under {model.name}'s tokenizer")
    print(f"{len(usable)} of {len(stimuli)} conflicts from {path}", file=sys.stderr)
    return usable


def _gc_command(args: argparse.Namespace) -> int:
    if args.conflicts and not Path(args.conflicts).is_file():
        print(f"error: --conflicts {args.conflicts}: no such file", file=sys.stderr)
        return 2
    model = listenkit.load_model(args.model)
    if args.conflicts:
        try:
            stimuli = _own_conflicts(args, model)
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        args.family = Path(args.conflicts).stem
    else:
        _, stimuli = conflict_family(
            CONFLICT_FAMILIES[args.family],
            args.per_flip_type,
            encode=model.text_tokens,
            tokenizer_name=model.name,
            seed=args.seed,
        )
    result = grounding_sweep(
        model, stimuli, floor=args.floor, batch_size=args.batch_size, progress=not args.quiet
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "gc.json", result.to_dict() | {"exclusions": result.exclusions()})
    tdr = text_dominance_ratio(result.m_x, stimuli)
    if not result.included.any():
        print(f"all {len(result.ids)} stimuli excluded by the floors; no curve", file=sys.stderr)
        return 1
    curves = bootstrap_grounding(
        result.da_ratio(), result.dt_ratio(), result.layers,
        rng=np.random.default_rng(args.seed), n_resamples=args.resamples,
        positive_part=True,
    )  # fmt: skip
    rows = []
    for r in curves.to_records():
        row = {"layer": r["layer"], "n": r["n"]}
        for name in ("dA", "dT", "gc"):
            row |= {name: r[name], f"{name}_low": r[f"{name}_ci"][0],
                    f"{name}_high": r[f"{name}_ci"][1]}  # fmt: skip
        rows.append(row)
    with open(out / "gc_curve.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_grounding(
        out / "gc.png", curves, title=f"gc {args.model} {args.family} (n={curves.n})",
        l_star_samples=curves.l_star_samples,
    )  # fmt: skip
    print(
        f"{args.model} {args.family}: n used {curves.n} of {len(result.ids)}, l*_gc "
        f"{curves.l_star or 'undefined'}, TDR {tdr['all'][0]:.2f}; wrote {out}"
    )
    return 0


def _scorecard_mapping(args: argparse.Namespace) -> dict | None:
    """The scorecard's words and predictions (``--mapping``; default
    ``claims/scorecard.toml`` when it exists), or None."""
    from listenkit.report.scorecard import load_mapping

    path = Path(args.mapping) if args.mapping else Path("claims/scorecard.toml")
    if args.mapping or path.is_file():
        return load_mapping(path)
    return None


def _compare(args: argparse.Namespace, ledgers: list[dict]) -> int:
    """``--compare``: the changed cells, one per line; with ``--markdown`` the two
    versions side by side, each change with its findings and amendments."""
    from listenkit.report.verdict_changes import amendments_from, by_version, markdown_changes

    try:
        old, new = by_version(ledgers)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if not args.markdown:
        changed = compare_ledgers(old, new)
        print("\n".join(changed) if changed else "no verdict changed")
        return 0
    path = Path(args.preregistration)
    amendments, experiment_of = [], {}
    if path.is_file():
        import tomllib

        amendments, experiment_of = amendments_from(tomllib.loads(path.read_text()))
    elif args.preregistration != DEFAULT_PREREGISTRATION:
        print(f"no pre-registration file at {path}", file=sys.stderr)
        return 2
    print(markdown_changes(old, new, amendments, experiment_of), end="")
    return 0


def _times(args: argparse.Namespace) -> int:
    """``--times``: each cell's compute time, from the runs' evidence files."""
    from listenkit.report.compute_times import cell_times, markdown_times
    from listenkit.report.verdict_changes import amendments_from

    experiment_of: dict[str, str] = {}
    path = Path(args.preregistration)
    if path.is_file():
        import tomllib

        experiment_of = amendments_from(tomllib.loads(path.read_text()))[1]
    folders = [Path(p) if Path(p).is_dir() else Path(p).parent for p in args.ledgers]
    print(markdown_times(cell_times(folders, experiment_of)), end="")
    return 0


def _into(args: argparse.Namespace, name: str, produce) -> int:
    """Run ``produce()`` (a command that prints); with ``--into FILE``, write what it
    printed into FILE's block ``name`` instead."""
    if not args.into:
        return produce()
    import contextlib
    import io

    from listenkit.report.generated_block import paste

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = produce()
    if code != 0:
        return code
    try:
        changed = paste(args.into, name, buffer.getvalue())
    except (OSError, ValueError) as err:
        print(err, file=sys.stderr)
        return 2
    print(f"{args.into}: block {name} {'rewritten' if changed else 'unchanged'}")
    return 0


def _compare_block(ledgers: list[dict]) -> str:
    versions = sorted({ledger.get("preregistration_version") or 0 for ledger in ledgers})
    return f"v{versions[-1]}-vs-v{versions[0]}"


def _report_command(args: argparse.Namespace) -> int:
    if args.into and not (args.scorecard or args.times or (args.compare and args.markdown)):
        print("--into needs --scorecard, --times or --compare --markdown", file=sys.stderr)
        return 2
    if args.into and args.compare and args.times:
        print("--into takes one block: --compare --markdown or --times", file=sys.stderr)
        return 2
    if args.publish:
        copied = publish_run(args.ledgers[0], args.publish)
        print(f"published {len(copied)} files to {args.publish}")
        return 0
    if args.redraw:
        from listenkit.report.head_plots import redraw_head_plots

        drawn = redraw_head_plots(args.ledgers[0])
        print(f"redrew {len(drawn)} plots from their evidence in {args.ledgers[0]}")
        if not args.html:
            return 0
    if args.times and not args.compare:
        return _into(args, "times", lambda: _times(args))
    mapping = _scorecard_mapping(args)
    if args.html:
        from listenkit.report.static_page import render_run

        print(f"wrote {render_run(args.ledgers[0], scorecard=mapping)}")
        return 0
    ledgers = [load_ledger(path) for path in args.ledgers]
    if args.scorecard:
        from listenkit.report.scorecard import markdown_scorecard

        def scorecard() -> int:
            print(markdown_scorecard(ledgers, mapping or {}), end="")
            return 0

        return _into(args, "scorecard", scorecard)
    if args.compare and args.into:
        return _into(args, _compare_block(ledgers), lambda: _compare(args, ledgers))
    if args.compare:
        code = _compare(args, ledgers)
        if code == 0 and args.times:
            print()
            code = _times(args)
        return code
    try:
        merged = ledgers[0] if len(ledgers) == 1 else merge_ledgers(ledgers)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    print(markdown_matrix(merged), end="")
    return 0


def _run_options(command: argparse.ArgumentParser, *, seed: str, unit: str) -> None:
    """The options ``sweep`` and ``gc`` share: seed, resamples, batch size, quiet."""
    command.add_argument("--seed", type=int, default=20260226, help=seed)
    command.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    command.add_argument("--batch-size", type=int, default=8, help=f"{unit} per forward pass")
    command.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``listenkit`` command line (sub-commands ``sweep``, ``gc``, ``report``)."""
    parser = argparse.ArgumentParser(prog="listenkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="patch one site over all layers and plot the curve")
    sweep.add_argument("--model", default="whisper-base", help="a Whisper checkpoint name")
    sweep.add_argument(
        "--family", choices=sorted(DEFAULT_FAMILIES), default="noise",
        help="a built-in minimal-pair family (ignored with --audio or --pairs-manifest)",
    )  # fmt: skip
    sweep.add_argument(
        "--audio", metavar="DIR",
        help="your own recordings: a folder of NAME.wav + NAME.txt (transcript) pairs, "
        "corrupted by --corrupt (other rates are resampled to 16 kHz, stereo downmixed)",
    )  # fmt: skip
    sweep.add_argument(
        "--corrupt", default="noise:0", metavar="noise:SNR_DB[:KIND]",
        help="how --audio is corrupted: noise at SNR_DB over the speech span, KIND white "
        "(default), pink or babble; clean and corrupt share one level",
    )  # fmt: skip
    sweep.add_argument(
        "--pairs-manifest", metavar="FILE",
        help='your own clean/corrupt pairs: JSONL of {"id", "text", "clean", "corrupt"} '
        "(paths relative to the file)",
    )  # fmt: skip
    sweep.add_argument(
        "--site", default="encoder.attn_out", choices=sorted(OPENAI_WHISPER),
        help="the activation patched at every layer",
    )  # fmt: skip
    sweep.add_argument("--out", required=True, help="output directory")
    sweep.add_argument("--pairs", type=int, default=16, help="first N text-bank sentences")
    sweep.add_argument(
        "--mode", choices=("denoise", "noise"), default="denoise",
        help="denoise: clean into corrupt (what is sufficient); noise: the reverse",
    )  # fmt: skip
    sweep.add_argument(
        "--reference", choices=("greedy", "text"), default="greedy",
        help="the transcript scored: the clean run's greedy decode, or the given text",
    )  # fmt: skip
    sweep.add_argument(
        "--floor", type=float, default=1.0,
        help="signed exclusion floor: pairs with m_clean - m_corrupt below it (nats) are left out",
    )  # fmt: skip
    _run_options(sweep, seed="noise and bootstrap seed", unit="pairs")
    gc = sub.add_parser("gc", help="grounding coefficient per decoder layer on conflicts")
    gc.add_argument("--model", default="whisper-base", help="a Whisper checkpoint name")
    gc.add_argument(
        "--family", choices=sorted(CONFLICT_FAMILIES), default="conflict",
        help="the built-in audio-text conflicts (ALME schema), clean or with noise",
    )  # fmt: skip
    gc.add_argument("--per-flip-type", type=int, default=10, help="stimuli per flip type")
    gc.add_argument(
        "--conflicts", metavar="JSONL",
        help="your own conflicts instead of --family: ALME JSONL records (stimulus_id, "
        "language, audio_path, ref_text, conflict_text, question) plus conflict_audio_path, "
        "a recording of conflict_text",
    )  # fmt: skip
    gc.add_argument(
        "--audio-root", metavar="DIR",
        help="where --conflicts' audio paths start (default: the JSONL's folder)",
    )  # fmt: skip
    gc.add_argument("--out", required=True, help="output directory")
    gc.add_argument("--floor", type=float, default=1.0, help="exclusion floors (nats)")
    _run_options(gc, seed="stimulus and bootstrap seed", unit="stimuli")
    report = sub.add_parser(
        "report", help="the verdict ledger as a Markdown matrix, or what changed between two"
    )
    report.add_argument(
        "ledgers",
        nargs="+",
        help="verdicts.json (or its folder); two with --compare; several distinct runs "
        "are merged into one matrix with --markdown",
    )
    report.add_argument("--markdown", action="store_true", help="print the verdict matrix")
    report.add_argument(
        "--compare", action="store_true",
        help="list verdicts that changed between two ledgers (OLD NEW), or between the two "
        "pre-registration versions of the ledgers given; with --markdown, side by side with "
        "each change's findings and amendments",
    )  # fmt: skip
    report.add_argument(
        "--into", metavar="FILE",
        help="with --scorecard, --times or --compare --markdown: write the output into "
        "FILE between its markers (<!-- scorecard|times|vN-vs-vM:generated --> ... "
        "<!-- ...:end -->) instead of printing it",
    )  # fmt: skip
    report.add_argument(
        "--times", action="store_true",
        help="print each cell's compute time (its stages, from the evidence files), and "
        "E3's time per LoRA seed; after --compare's output when both are given",
    )  # fmt: skip
    report.add_argument(
        "--preregistration", metavar="TOML", default=DEFAULT_PREREGISTRATION,
        help="the amendments --compare --markdown cites and the experiment of each claim "
        "--times groups by (default: %(default)s)",
    )  # fmt: skip
    report.add_argument(
        "--html", action="store_true", help="write RUN/index.html: matrix first, every cell"
    )
    report.add_argument(
        "--redraw", action="store_true",
        help="redraw RUN's E4 plots from their evidence.json (no recomputing); with --html, "
        "then write the page",
    )  # fmt: skip
    report.add_argument(
        "--publish", metavar="DIR", help="copy the run's ledger, report and evidence to DIR"
    )
    report.add_argument(
        "--scorecard", action="store_true",
        help="print the scorecard: one row per claim of the paper (words, prediction, "
        "verdicts), from every ledger given",
    )  # fmt: skip
    report.add_argument(
        "--mapping", metavar="TOML",
        help="the scorecard's words and predictions (default: claims/scorecard.toml)",
    )  # fmt: skip
    status = sub.add_parser(
        "status", help="where a long run stands: its cached stages, checkpoints and adapters"
    )
    status.add_argument(
        "--cache", metavar="DIR",
        help="the listenkit cache the run uses (default: $LISTENKIT_CACHE, else the user "
        "cache folder)",
    )  # fmt: skip
    status.add_argument(
        "--copy-to", metavar="DIR",
        help="also copy the run's finished stages, checkpoints and adapters to DIR (only "
        "what changed), so it can resume on another machine: cp -r DIR/. CACHE/",
    )  # fmt: skip
    return parser


def _status_command(args: argparse.Namespace) -> int:
    from listenkit.models.cache import cache_root
    from listenkit.report.cache_status import cache_status, format_status

    root = Path(args.cache) if args.cache else cache_root()
    try:
        stages = cache_status(root)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    adapters = root / "adapters"
    names = sorted(p.name for p in adapters.iterdir() if p.is_dir()) if adapters.is_dir() else []
    print(f"cache {root}")
    print(format_status(stages, names), end="")
    if args.copy_to:
        from listenkit.report.cache_copy import copy_run

        done = copy_run(root, args.copy_to)
        print(
            f"copied to {args.copy_to}: {done.copied} files ({done.bytes_copied / 1e6:.1f} MB), "
            f"{done.unchanged} unchanged, {done.vanished} finished while copying, "
            f"{done.removed} superseded files removed; "
            f"restore with: cp -r {args.copy_to}/. {root}/"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "report":
        return _report_command(args)
    if args.command == "sweep":
        return _sweep_command(args)
    if args.command == "gc":
        return _gc_command(args)
    if args.command == "status":
        return _status_command(args)
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
