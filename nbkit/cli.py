"""`python -m nbkit` / `nbkit`: list variants, train, summarise."""

from __future__ import annotations

import argparse
import sys


def cmd_variants(args) -> None:
    from .models import variant_table

    rows = variant_table(num_classes=args.num_classes)
    width = max(len(r["variant"]) for r in rows)
    print(f"{'variant':<{width}}  {'params':>11}  description")
    for r in rows:
        print(f"{r['variant']:<{width}}  {r['parameters']:>11,}  {r['description']}")
    print(f"\n{len(rows)} variants; parameter counts for a {args.num_classes}-class dataset "
          "(only -tnc sizes its head to the classes; the others keep the original's 1000-way head)")


def _progress_printer(every: float = 10.0):
    """The run's progress on stderr: on a terminal one line redrawn at every log window; in a log
    file a line at each evaluation and at most one every `every` seconds between them."""
    import time

    tty, last = sys.stderr.isatty(), [0.0]

    def show(p: dict) -> None:
        now = time.monotonic()
        if not tty and not p.get("evaluated") and now - last[0] < every:
            return
        last[0] = now
        width = 24
        done = int(width * min(p["step"], p["max_iter"]) / p["max_iter"])
        test = "-" if p["test_acc"] is None else f"{p['test_acc']:.4f}"
        loss = "-" if p["loss"] is None else f"{p['loss']:.4f}"
        line = (f"[{'#' * done}{'.' * (width - done)}] step {p['step']}/{p['max_iter']}  loss {loss}  "
                f"test top-1 {test}  {p['images_per_second']:,.0f} img/s")
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


# settings with a flag of their own (--max-iter, ...); every other setting goes through --set
METAVARS = {"dataset": "NAME|PATH", "data_dir": "DIR", "seed": "S"}  # the rest are counts: N
SETTING_FLAGS = {
    "dataset": "cifar100 (default), cifar10, synthetic, or an image folder/archive path",
    "max_iter": "training steps (default 5000); --max-steps is the same flag",
    "eval_every": "steps between evaluations (default 100)",
    "batch_size": "training batch (default 128)",
    "seed": "seed for initialisation, data order and augmentation (default 0)",
    "val_size": "training images held out as a val split (default 0)",
    "data_dir": "where datasets and caches live (default data/)",
    "precision": "auto (default: bf16 autocast on CUDA, fp32 elsewhere), bf16, or fp32 as the original",
}


def add_setting_flags(p: argparse.ArgumentParser) -> None:
    from .settings import Settings

    types = {k: type(v) for k, v in Settings().to_dict().items()}
    for key, help in SETTING_FLAGS.items():
        names = ["--" + key.replace("_", "-")] + (["--max-steps"] if key == "max_iter" else [])
        p.add_argument(*names, dest=key, type=types[key], help=help, metavar=METAVARS.get(key, "N"))
    p.add_argument("--set", nargs="*", action="extend", metavar="KEY=VALUE",
                   help="any other setting, e.g. --set use_augmentation=true (repeatable)")


def setting_overrides(args) -> dict:
    from .settings import parse_assignments

    overrides = parse_assignments(args.set or [])
    overrides.update({key: getattr(args, key) for key in SETTING_FLAGS if getattr(args, key) is not None})
    return overrides


def cmd_train(args) -> None:
    from . import distributed
    from .runlog import resume_settings
    from .train import train
    from .variants import resolve

    overrides = setting_overrides(args)
    if args.pack_json:
        return _train_pack(args, overrides)
    if args.resume:
        if args.spec or args.run_dir:
            raise ValueError("give either VARIANT|CONFIG.yml [--run-dir DIR] or --resume RUN_DIR, not both")
        name, settings = resume_settings(args.resume, overrides)
    elif not args.spec:
        raise ValueError("train expects a VARIANT or CONFIG.yml (see `nbkit variants`), or --resume RUN_DIR")
    else:
        name, settings = resolve(args.spec, **overrides)
        if args.settings_json:  # a sweep's run: its resolved settings, whole
            settings = _settings(_json(args.settings_json, "--settings-json", "a JSON object of settings"),
                                 "--settings-json").replace(**overrides)
    main_process = distributed.from_env().main  # under torchrun, rank 0 alone reports
    run_dir = train(name, settings, runs_dir=args.runs_dir, device=args.device, label=args.label,
                    progress=_progress_printer() if main_process else None,
                    run_dir=args.resume or args.run_dir, resume=bool(args.resume), restart=args.restart)
    if main_process:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(run_dir)


def _train_pack(args, overrides: dict) -> None:
    """A sweep's pack: new runs of one variant, one per {run_dir, settings}, trained as one model."""
    from .pack import train_pack

    expected = "a JSON list of {run_dir, settings} objects"
    runs = _json(args.pack_json, "--pack-json", expected)
    if not isinstance(runs, list) or not all(isinstance(r, dict) and {"run_dir", "settings"} <= set(r) for r in runs):
        raise ValueError(f"--pack-json expects {expected}")
    if not args.spec or args.resume or args.run_dir or args.settings_json:
        raise ValueError("--pack-json goes with a VARIANT alone (not --resume, --run-dir or --settings-json)")
    settings = [_settings(r["settings"], "--pack-json settings").replace(**overrides) for r in runs]
    for run_dir in train_pack(args.spec, settings, [r["run_dir"] for r in runs], device=args.device,
                              label=args.label, restart=args.restart):
        print(run_dir)


def _json(text: str, flag: str, expected: str):
    import json

    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{flag} expects {expected} ({e})") from None


def _settings(value, flag: str):
    """Resolved settings passed whole by a sweep, keys checked."""
    from .settings import Settings, check_keys

    if not isinstance(value, dict):
        raise ValueError(f"{flag} expects a JSON object of settings, got {type(value).__name__}")
    check_keys(value)
    return Settings(**value)


def cmd_sweep(args) -> None:
    from .data import load_dataset
    from .errors import FAILED, STOPPED
    from .sweep import plan, run_sweep

    overrides = setting_overrides(args)
    jobs = plan(args.names, args.seeds, overrides, args.runs_dir)
    first = jobs[0].settings
    if first.dataset != "synthetic":
        load_dataset(first.dataset, first.data_dir)  # fail once, here, and fill the cache for the runs
    if args.backend == "ray":
        from .ray_backend import run_sweep_ray

        if args.pack != 1:
            raise ValueError("--pack works with the local backend; with --backend ray each run is its own task")
        outcome = run_sweep_ray(jobs, args.runs_dir, address=args.address, device=args.device, jobs_per_gpu=args.jobs,
                                cpus_per_run=args.cpus_per_run, max_retries=args.max_retries,
                                shared_fs=args.shared_fs, label=args.label)
    else:
        outcome = run_sweep(jobs, device=args.device, jobs_per_device=args.jobs, label=args.label, pack=args.pack)
    if outcome["stopped"]:
        raise SystemExit(STOPPED)
    if outcome["failed"]:
        raise SystemExit(FAILED)


def cmd_summary(args) -> None:
    from .summary import summary_markdown, variant_markdown

    if args.scorecard:
        from .claims import scorecards_markdown

        print(scorecards_markdown(args.runs_dir, args.dataset))
    else:
        print(variant_markdown(args.runs_dir, args.dataset) if args.by_variant else summary_markdown(args.runs_dir, args.dataset))


def cmd_report(args) -> None:
    from .report import export_all

    for path in export_all(args.runs_dir, args.out, args.figures, args.dataset):
        print(path)


def _at_least_one(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return n


def add_runs_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", type=_runs_dir, default=_runs_dir(None), metavar="DIR",
                   help="where run logs are (default: $NBKIT_RUNS_DIR, else artifacts/runs of the project "
                        "holding the working directory)")


def _runs_dir(value: str | None):
    from .runlog import runs_dir

    return runs_dir(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbkit", description="Compare image-classification models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("variants", help="list the variants with description and parameter count")
    p.add_argument("--num-classes", type=_at_least_one, default=100, help="class count of the dataset (default 100)")
    p.set_defaults(func=cmd_variants)

    p = sub.add_parser("train", help="train one run of a variant or an original-format YAML config",
                       description="Train one run. Over several GPUs, one run data-parallel: "
                                   "torchrun --nproc_per_node N -m nbkit train VARIANT ... (the global batch "
                                   "stays --batch-size; rank 0 writes the run).")
    p.add_argument("spec", metavar="VARIANT|CONFIG.yml", nargs="?")
    add_setting_flags(p)
    p.add_argument("--settings-json", metavar="JSON",
                   help="the run's resolved settings as one JSON object, instead of the variant's (how a sweep "
                        "passes each run its settings)")
    p.add_argument("--pack-json", metavar="JSON",
                   help="train several new runs of VARIANT as one vectorised model: a JSON list of {run_dir, "
                        "settings} that differ in the seed only (how `sweep --pack` starts a pack)")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    add_runs_dir(p)
    p.add_argument("--run-dir", help="write the run into this directory instead of a new timestamped one")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an unfinished run from its last checkpoint")
    p.add_argument("--label", help="a note stored in config.json (e.g. 'reduced CPU comparison')")
    p.add_argument("--restart", action="store_true",
                   help="begin again where an earlier attempt left no readable checkpoint (with --run-dir, or "
                        "with --resume to keep the run's settings)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "sweep", help="run a comparison or several variants, K runs at a time per GPU",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train every variant of the comparisons or variants named, --seeds runs each, --jobs at\n"
                    "a time per GPU (or on the CPU). A run's directory is fixed by its settings and seed:\n"
                    "running the same sweep again skips finished runs and resumes interrupted ones.",
        epilog="examples:\n  nbkit sweep models --seeds 2\n"
               "  nbkit sweep resnet18 resnet18-gn --dataset cifar10 --max-iter 500 --eval-every 50 --jobs 2\n"
               "  nbkit sweep learning --dataset path/to/images.tar.xz --device cpu --label 'a quick CPU look'\n"
               "  nbkit sweep resnets learning models --seeds 2 --jobs 8 --pack 2   # the study, 2 seeds per process\n"
               "  nbkit sweep resnets --backend ray --address auto")
    p.add_argument("names", nargs="+", metavar="COMPARISON|VARIANT",
                   help="resnets, learning, models, or variant names (see `nbkit variants`)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="seeds per variant, counting up from --seed (default 1)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs at once per GPU, or on the CPU (default 1); "
                                                                    "with --backend ray, runs sharing one GPU")
    add_setting_flags(p)
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda (all visible GPUs)")
    add_runs_dir(p)
    p.add_argument("--label", help="a note stored in every run's config.json")
    p.add_argument("--pack", type=int, default=1, metavar="K",
                   help="train up to K new seeds of a variant in one process as one vectorised model (default 1: "
                        "each run alone); each still writes, stops, fails and resumes as its own run")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local (default): processes on this machine; ray: Ray tasks on a cluster (pip install '.[ray]')")
    ray = p.add_argument_group("ray backend")
    ray.add_argument("--address", help="the Ray cluster: auto (one started with ray start) or HOST:PORT; "
                                       "default RAY_ADDRESS, else a new local instance")
    ray.add_argument("--cpus-per-run", type=int, default=1, metavar="N", help="CPUs each CPU run asks for (default 1)")
    ray.add_argument("--max-retries", type=int, default=2, metavar="N",
                     help="times a run whose worker died starts again from its checkpoint (default 2)")
    ray.add_argument("--shared-fs", choices=["auto", "yes", "no"], default="auto",
                     help="whether workers write into the runs directory; auto (default) checks per worker, "
                          "no copies each run back to this machine")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("summary", help="the original's two tables (best train_200 and test top-1 per run)",
                       description="Print the original's two tables (each run's best train_200 and best test "
                                   "top-1, with its step) as markdown, or one row per variant across seeds.")
    add_runs_dir(p)
    p.add_argument("--dataset", metavar="NAME", help="only runs on this dataset (default: every dataset)")
    p.add_argument("--by-variant", action="store_true",
                   help="one row per variant: mean and std across seeds (default: one row per run)")
    p.add_argument("--scorecard", action="store_true",
                   help="each claim of the original study checked against the runs: holds, does not hold, "
                        "within noise or not measured (default: off)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("report", help="each comparison as one HTML file that works offline, its charts as PNG and SVG",
                       description="Write <out>/<comparison>.html for resnets, learning and models: intro, the run "
                                   "set's protocol, the interactive charts, findings and tables in one file that "
                                   "needs no network (mail or archive it); and each main chart as PNG and SVG.")
    add_runs_dir(p)
    p.add_argument("--out", default="artifacts/reports", metavar="DIR",
                   help="where the HTML reports go (default: artifacts/reports)")
    p.add_argument("--figures", metavar="DIR", help="where the PNG/SVG charts go (default: <out>/figures)")
    p.add_argument("--dataset", metavar="NAME",
                   help="the dataset the reports and figures show (default: the one with most runs of each comparison)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import OK, RunBusy, RunStopped, exit_code

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SystemExit as e:
        return int(e.code or 0)
    except KeyboardInterrupt as e:
        print(f"\nnbkit {args.command}: interrupted", file=sys.stderr)
        return exit_code(e)
    except Exception as e:  # one line a user can act on; the run (if any) is marked failed/stopped
        if isinstance(e, RunStopped):
            print(f"\nnbkit {args.command}: stopped ({e}); the run is marked stopped", file=sys.stderr)
        else:
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            kind = "" if isinstance(e, (ValueError, OSError, RunBusy)) else f"{type(e).__name__}: "
            print(f"nbkit {args.command}: error: {kind}{message}", file=sys.stderr)
        return exit_code(e)
    return OK
