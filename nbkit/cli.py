"""`python -m nbkit` / `nbkit`: list variants, train, summarise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_variants(args) -> None:
    from .models import variant_table
    from .study import check_models, load_study

    study = load_study(args.comparisons)
    check_models(study, num_classes=args.num_classes)
    rows = variant_table(num_classes=args.num_classes, study=study)
    width = max(len(r["variant"]) for r in rows)
    print(f"{'variant':<{width}}  {'params':>11}  description")
    for r in rows:
        print(f"{r['variant']:<{width}}  {r['parameters']:>11,}  {r['description']}")
    from .variants import VARIANTS

    own = sum(not v.original for v in VARIANTS.values())
    kinds = f"{len(VARIANTS) - own} of the original study, {own} of nbkit's own" + (
        f", {len(study.own_variants)} of {args.comparisons}" if study.own_variants else "")
    print(f"\n{len(rows)} variants ({kinds}); parameter counts for a {args.num_classes}-class dataset "
          "(only -tnc sizes its head to the classes; the others keep the original's 1000-way head"
          + ("; timm and your own models are always sized to the classes)" if study.own_variants else ")"))
    for c in study.own_comparisons:
        print(f"\ncomparison {c.name} ({args.comparisons}): {c.question}\n  {', '.join(c.variants)}; "
              f"baseline {c.baseline}" + (f"; expected: {c.expected}" if c.expected else ""))


def add_comparisons(p: argparse.ArgumentParser) -> None:
    p.add_argument("--comparisons", metavar="FILE",
                   help="a TOML or YAML file of your own variants and comparisons, on top of nbkit's "
                        "(see README, 'Your own models'; default: nbkit's alone)")


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
    from .data import load_dataset
    from .runlog import resume_settings
    from .study import load_study
    from .train import train
    from .variants import resolve

    overrides = setting_overrides(args)
    study = load_study(args.comparisons)  # nbkit's variants, and the file's when one is given
    definition = _definition(args, study)
    if args.pack_json:
        return _train_pack(args, overrides, definition)
    if args.resume:
        if args.spec or args.run_dir:
            raise ValueError("give either VARIANT|CONFIG.yml [--run-dir DIR] or --resume RUN_DIR, not both")
        name, settings = resume_settings(args.resume, overrides)
    elif not args.spec:
        raise ValueError("train expects a VARIANT or CONFIG.yml (see `nbkit variants`), or --resume RUN_DIR")
    else:
        # a comparisons file's variant passed whole by a sweep is known by its definition alone
        name, settings = (args.spec, None) if args.variant_json else resolve(args.spec, study, **overrides)
        if args.settings_json:  # a sweep's run: its resolved settings, whole
            settings = _settings(_json(args.settings_json, "--settings-json", "a JSON object of settings"),
                                 "--settings-json").replace(**overrides)
        elif name in study.own_variants:  # a comparisons file's variant, by name: its model checked first
            _check_own_models(study, [(name, settings)], load_dataset(settings.dataset, settings.data_dir))
    main_process = distributed.from_env().main  # under torchrun, rank 0 alone reports
    run_dir = train(name, settings, runs_dir=args.runs_dir, device=args.device, label=args.label,
                    progress=_progress_printer() if main_process else None,
                    run_dir=args.resume or args.run_dir, resume=bool(args.resume), restart=args.restart,
                    definition=definition)
    if main_process:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(run_dir)


def _definition(args, study) -> dict | None:
    """What defines the variant trained, for its config.json: a sweep passes a comparisons file's
    variant whole (--variant-json); a variant by name is looked up; a YAML config has none."""
    if args.variant_json:
        definition = _json(args.variant_json, "--variant-json", "a JSON object defining the variant")
        if not isinstance(definition, dict) or definition.get("name") != args.spec or not args.spec:
            raise ValueError("--variant-json expects a JSON object whose name is the VARIANT given")
        if not (args.settings_json or args.pack_json):
            raise ValueError("--variant-json goes with --settings-json or --pack-json (how a sweep starts a run)")
        return definition
    if args.resume or not args.spec or str(args.spec).endswith((".yml", ".yaml")):
        return None
    return study.variants[args.spec].definition() if args.spec in study.variants else None


def _train_pack(args, overrides: dict, definition: dict | None) -> None:
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
                              label=args.label, restart=args.restart, definition=definition):
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
    from .study import load_study
    from .sweep import plan, run_sweep

    overrides = setting_overrides(args)
    study = load_study(args.comparisons)
    jobs = plan(args.names, args.seeds, overrides, args.runs_dir, study)
    first, own = jobs[0].settings, [j for j in jobs if j.definition]
    if first.dataset != "synthetic" or own:
        ds = load_dataset(first.dataset, first.data_dir)  # fail once, here, and fill the cache for the runs
        if own:
            _check_own_models(study, [(j.variant, j.settings) for j in own], ds, args.pack)
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


def existing_runs_dir(path: Path) -> Path:
    """A runs directory to read: one that does not exist, or is a file, is an error, not "no runs"."""
    if not path.exists():
        raise ValueError(f"runs directory {path} does not exist; expected a folder of runs (see --runs-dir)")
    if not path.is_dir():
        raise ValueError(f"runs directory {path} is not a folder; expected a folder of runs (see --runs-dir)")
    return path


def _check_own_models(study, runs: list[tuple[str, object]], ds, pack: int = 1) -> None:
    """Before any run folder is made: the file's models of runs ((variant, settings) pairs) build
    and give (batch, classes) on this dataset, and pack where asked; else the error names the file
    and the variant's key."""
    from .study import check_models

    size = ds.images["train"].shape[-1]
    check_models(study, [name for name, _ in runs], ds.num_classes, size)
    if pack > 1:
        from .pack import check_packable

        for name, settings in dict(runs).items():
            check_packable(name, settings, ds.num_classes, size)


def cmd_summary(args) -> None:
    from .comparisons import get_comparison
    from .study import load_study
    from .summary import summary_markdown, variant_markdown

    study = load_study(args.comparisons)  # a bad file is refused, whatever is printed
    existing_runs_dir(args.runs_dir)
    if args.scorecard:
        from .claims import scorecards_markdown

        print(scorecards_markdown(args.runs_dir, args.dataset))
    else:
        variants = get_comparison(args.comparison, study).variants if args.comparison else None
        table = variant_markdown if args.by_variant else summary_markdown
        print(table(args.runs_dir, args.dataset, variants=variants))


def cmd_report(args) -> None:
    from .comparisons import get_comparison
    from .report import export_all
    from .study import load_study

    study = load_study(args.comparisons)
    existing_runs_dir(args.runs_dir)
    if args.comparison:
        comparisons = [get_comparison(args.comparison, study)]
    else:  # a file's comparisons are what its user came for; else nbkit's
        comparisons = study.own_comparisons or list(study.comparisons.values())
    for path in export_all(args.runs_dir, args.out, args.figures, args.dataset, comparisons=comparisons):
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
    add_comparisons(p)
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
    p.add_argument("--variant-json", metavar="JSON",
                   help="the definition of a comparisons file's VARIANT, whole (how a sweep passes it, so the run "
                        "needs no file); recorded in config.json")
    add_comparisons(p)
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
                   help="resnets, learning, models, or variant names (see `nbkit variants`); with --comparisons, "
                        "that file's too")
    add_comparisons(p)
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
    add_comparisons(p)
    p.add_argument("--comparison", metavar="NAME",
                   help="only the runs of this comparison's variants (nbkit's or the --comparisons file's; "
                        "default: every run)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("report", help="each comparison as one HTML file that works offline, its charts as PNG and SVG",
                       description="Write <out>/<comparison>.html for resnets, learning and models (or the comparisons of "
                                   "--comparisons FILE): intro, the run "
                                   "set's protocol, the interactive charts, findings and tables in one file that "
                                   "needs no network (mail or archive it); and each main chart as PNG and SVG.")
    add_runs_dir(p)
    p.add_argument("--out", default="artifacts/reports", metavar="DIR",
                   help="where the HTML reports go (default: artifacts/reports)")
    p.add_argument("--figures", metavar="DIR", help="where the PNG/SVG charts go (default: <out>/figures)")
    p.add_argument("--dataset", metavar="NAME",
                   help="the dataset the reports and figures show (default: the one with most runs of each comparison)")
    add_comparisons(p)
    p.add_argument("--comparison", metavar="NAME",
                   help="report this comparison only (default: the --comparisons file's comparisons, else "
                        "resnets, learning and models)")
    p.set_defaults(func=cmd_report)
    return parser


def one_line(e: BaseException) -> str:
    """An error's first line, with the next where the first only introduces it ("... failed:")."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


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
            from .escape import terminal

            kind = "" if isinstance(e, (ValueError, OSError, RunBusy)) else f"{type(e).__name__}: "
            print(f"nbkit {args.command}: error: {kind}{terminal(one_line(e))}", file=sys.stderr)
        return exit_code(e)
    return OK


def run() -> None:
    """The `nbkit` command: main, then exit with its code. A process that stopped on a signal
    ignores later ones while it exits: another Ctrl-C would only break the interpreter's own
    shutdown with a traceback, after the run is already checkpointed and marked stopped."""
    import signal

    from .errors import STOPPED

    code = main()
    if code == STOPPED:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
    sys.exit(code)
