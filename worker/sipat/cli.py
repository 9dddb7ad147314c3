"""Command line: train, evaluate, make-benchmark-data, compare, sweep.

    python -m worker.sipat train --config cfg.json --out runs/a [--set eps=0.03 --set method=sip_at]
        [--events events.jsonl] [--stop-file STOP]
    python -m worker.sipat evaluate --checkpoint runs/a/final.pt [--data DIR] [--eps 2/255,8/255]
    python -m worker.sipat make-benchmark-data --out data/bench
    python -m worker.sipat compare --dataset salience --seeds 0,1,2 --out runs/compare
    python -m worker.sipat sweep --set mask_fraction=0.25,0.5 --seeds 0,1 --base method=sip_at
        --baseline method=pgd_at --out runs/sweep [--results-only] [--margin 2] [--json]

Re-running the same train command after a kill resumes from the last finished epoch.
--events appends one JSON line per progress point and per finished epoch to a file (what a
supervising process relays: {"event": "batch", "point": ...}, {"event": "epoch", "epoch":
..., "total": ..., "metrics": ...} and the final evaluation's {"event": "evaluation", "point":
...}); --stop-file stops the run (exit code 1, the last
checkpoint kept) at the next batch once that file exists. Under torchrun, rank 0 alone
writes the events and watches the stop file, and stops every rank.
A bad configuration prints one line naming the field and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from fractions import Fraction
from pathlib import Path

from .config import ConfigError, TrainConfig, TrainingCancelled


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return float(Fraction(text))  # 8/255
        except (ValueError, ZeroDivisionError):
            return text


def _eps_list(text: str) -> list[float]:
    return [float(Fraction(t)) for t in text.split(",") if t]


def build_config(args: argparse.Namespace) -> TrainConfig:
    d = {}
    if args.config:
        try:
            d = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError("config", f"cannot read {args.config}: {e}") from e
        if not isinstance(d, dict):
            raise ConfigError("config", "must be a JSON object")
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(key or "--set", "expected key=value")
        d[key.strip()] = _parse_value(value)
    if args.data:
        d["data_dir"] = args.data
    return TrainConfig.from_dict(d)


class _EventFile:
    """--events: progress points and finished epochs as JSON lines, one write each (a reader
    that follows the file sees whole lines)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _write(self, event: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(event) + "\n")

    def on_epoch(self, epoch: int, total: int, metrics: dict) -> None:
        self._write({"event": "epoch", "epoch": epoch, "total": total, "metrics": metrics})

    def on_batch(self, point: dict) -> None:
        self._write({"event": "batch", "point": point})

    def on_evaluation(self, point: dict) -> None:
        self._write({"event": "evaluation", "point": point})


def _print_epoch(_epoch: int, _total: int, metrics: dict) -> None:
    print(json.dumps(metrics), flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    if cfg.data_dir is None:
        raise ConfigError("data_dir", "is required (in the config, --set data_dir=... or --data)")
    if not Path(cfg.data_dir).is_dir():
        raise ConfigError("data_dir", f"directory not found: {cfg.data_dir}")
    from .train import train

    out = Path(args.out)
    events = _EventFile(Path(args.events)) if args.events else None
    stop_file = Path(args.stop_file) if args.stop_file else None
    result = train(
        cfg,
        out,
        progress=not args.no_progress,
        on_epoch=events.on_epoch if events else _print_epoch,
        on_batch=events.on_batch if events else None,
        on_evaluation=events.on_evaluation if events else None,
        should_stop=stop_file.exists if stop_file else None,
    )
    # under torchrun only rank 0 has the results (the other ranks return {}); with --events
    # the supervising process reads them from metrics.json
    if result and events is None:
        print(json.dumps({"final": result["final"], "out": str(out)}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        _eps_list(args.eps),
        subset=args.subset,
        steps=args.steps,
        restarts=args.restarts,
        autoattack_n=args.autoattack_n,
        inequality_n=args.inequality_n,
        device=args.device,
    )
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text)
    print(text)
    return 0


def cmd_make_benchmark_data(args: argparse.Namespace) -> int:
    """Write the salience benchmark in the app's export format (sipat-dataset/1)."""
    import numpy as np
    from PIL import Image

    from .benchmark_data import salience_benchmark

    data = salience_benchmark(
        n_train=args.n_train, n_test=args.n_test, image_size=args.image_size, seed=args.seed
    )
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    entries, i = [], 0
    for split, ts in (("train", data.train), ("test", data.test)):
        for k in range(len(ts)):
            Image.fromarray(ts.images[k].permute(1, 2, 0).numpy()).save(out / f"images/{i}.png")
            Image.fromarray(np.ascontiguousarray(ts.maps[k, 0].numpy())).save(
                out / f"masks/{i}.png"
            )
            entries.append(
                {
                    "id": i,
                    "file": f"images/{i}.png",
                    "label": int(ts.labels[k]),
                    "split": split,
                    "mask": f"masks/{i}.png",
                }
            )
            i += 1
    manifest = {
        "format": "sipat-dataset/1",
        "dataset": "salience-benchmark",
        "classes": data.classes,
        "mask_set": None,
        "images": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    print(f"wrote {i} images to {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import VARIANTS, claims_table, markdown_table, run_compare

    overrides = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        overrides[key.strip()] = _parse_value(value)
    variants = tuple(args.variants.split(",")) if args.variants else VARIANTS
    seeds = [int(s) for s in args.seeds.split(",")]
    summary = run_compare(
        args.dataset, seeds, Path(args.out), variants, overrides, progress=not args.no_progress
    )
    print(markdown_table(summary))
    print()
    print(claims_table(summary))
    return 0


def _key_values(items: list[str] | None, *, many: bool) -> list[tuple[str, object]]:
    """KEY=VALUE (or KEY=V1,V2,... when many) options, in the order given."""
    out: list[tuple[str, object]] = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(key or item, "expected KEY=VALUE")
        parts = [_parse_value(v) for v in value.split(",")] if many else _parse_value(value)
        out.append((key.strip(), parts))
    return out


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import markdown, sweep_table, train_sweep

    axes = _key_values(args.set, many=True)
    baseline = dict(_key_values(args.baseline, many=False)) or None
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    base = dict(_key_values(args.base, many=False))
    out = Path(args.out)
    if not args.results_only:
        train_sweep(args.dataset, base, axes, seeds, baseline, out, progress=not args.no_progress)
    table = sweep_table(out, axes, baseline, args.margin)
    print(json.dumps(table, indent=1) if args.json else markdown(table))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m worker.sipat", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one run (resumes if --out holds a checkpoint)")
    t.add_argument("--config", help="JSON file with TrainConfig fields")
    t.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a field (repeatable)"
    )
    t.add_argument("--data", help="data directory (overrides data_dir)")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--events", help="append progress points and epochs here, as JSON lines")
    t.add_argument("--stop-file", help="stop at the next batch once this file exists")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="evaluate a checkpoint")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--data", help="data directory (default: the run's data_dir)")
    e.add_argument("--eps", default="1/255,2/255,4/255,8/255", help="comma-separated epsilon grid")
    e.add_argument("--subset", type=int, default=500, help="test images for PGD")
    e.add_argument("--steps", type=int, default=20, help="PGD steps (alpha = eps / 4)")
    e.add_argument("--restarts", type=int, default=1, help="PGD random restarts (worst case)")
    e.add_argument(
        "--autoattack-n",
        type=int,
        default=500,
        help="test images for AutoAttack at the training eps (0 = skip)",
    )
    e.add_argument(
        "--inequality-n", type=int, default=0, help="images for the inequality tests (0 = skip)"
    )
    e.add_argument("--device", default="cpu")
    e.add_argument("--out", help="also write the JSON here")
    e.set_defaults(func=cmd_evaluate)
    m = sub.add_parser(
        "make-benchmark-data", help="write the salience benchmark as an export directory"
    )
    m.add_argument("--out", required=True)
    m.add_argument("--n-train", type=int, default=1000)
    m.add_argument("--n-test", type=int, default=300)
    m.add_argument("--image-size", type=int, default=16)
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_make_benchmark_data)
    c = sub.add_parser(
        "compare", help="all methods x seeds on a benchmark, prints a markdown table"
    )
    c.add_argument("--dataset", choices=["salience", "mnist"], default="salience")
    c.add_argument("--seeds", default="0,1,2")
    c.add_argument("--variants", help="comma-separated subset of the variants")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a preset field")
    c.add_argument("--out", required=True)
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_compare)
    w = sub.add_parser(
        "sweep",
        help="one or two settings over values x seeds with a baseline arm; the app's table",
    )
    w.add_argument(
        "--set",
        action="append",
        required=True,
        metavar="FIELD=V1,V2",
        help="a sweepable setting and its values (once or twice)",
    )
    w.add_argument("--seeds", default="0,1,2")
    w.add_argument(
        "--baseline",
        action="append",
        metavar="KEY=VALUE",
        help="what sets the baseline arm apart, e.g. method=pgd_at (repeatable)",
    )
    w.add_argument(
        "--base", action="append", metavar="KEY=VALUE", help="a setting of every arm (repeatable)"
    )
    w.add_argument("--dataset", choices=["salience", "mnist"], default="salience")
    w.add_argument("--out", required=True, help="runs go to OUT/<arm>/seed<k>/")
    w.add_argument(
        "--results-only",
        action="store_true",
        help="train nothing: tabulate the metrics.json files already under --out",
    )
    w.add_argument(
        "--margin", type=float, help="equivalence margin in points (two one-sided tests)"
    )
    w.add_argument("--json", action="store_true", help="print the whole table as JSON")
    w.add_argument("--no-progress", action="store_true")
    w.set_defaults(func=cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"config error: {e.field}: {e.message}", file=sys.stderr)
        return 2
    except TrainingCancelled as e:
        print(f"cancelled: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
