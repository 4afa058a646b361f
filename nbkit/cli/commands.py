"""What each command does: `nbkit variants`, `train`, `sweep`, `summary` and `report`. Each
imports what it needs when it runs, so `nbkit --help` and reading runs never import torch."""

from __future__ import annotations

import sys

from nbkit.cli.options import existing_runs_dir, json_argument, setting_overrides, settings_argument


def cmd_variants(args) -> None:
    from nbkit.design.comparisons_file import check_models, load_study
    from nbkit.design.models import variant_table
    from nbkit.errors import terminal

    study = load_study(args.comparisons)
    check_models(study, num_classes=args.num_classes)
    rows = variant_table(num_classes=args.num_classes, study=study)
    width = max(len(r["variant"]) for r in rows)
    print(f"{'variant':<{width}}  {'params':>11}  description")
    for r in rows:  # a comparisons file's names and descriptions are data: no escape sequence reaches the terminal
        print(f"{terminal(r['variant']):<{width}}  {r['parameters']:>11,}  {terminal(r['description'])}")
    from nbkit.design.variants import VARIANTS

    own = sum(not v.original for v in VARIANTS.values())
    kinds = f"{len(VARIANTS) - own} of the original study, {own} of nbkit's own" + (
        f", {len(study.own_variants)} of {args.comparisons}" if study.own_variants else "")
    print(f"\n{len(rows)} variants ({kinds}); parameter counts for a {args.num_classes}-class dataset "
          "(only -tnc sizes its head to the classes; the others keep the original's 1000-way head"
          + ("; timm and your own models are always sized to the classes)" if study.own_variants else ")"))
    for c in study.own_comparisons:
        print(terminal(f"\ncomparison {c.name} ({args.comparisons}): {c.question}\n  {', '.join(c.variants)}; "
                       f"baseline {c.baseline}" + (f"; expected: {c.expected}" if c.expected else "")))


def _progress_printer(every: float = 10.0, note: str | None = None):
    """The run's progress on stderr: on a terminal one line redrawn at every log window; in a log
    file a line at each evaluation and at most one every `every` seconds between them. note: said
    once the run trains (so bad input stays one line)."""
    import time

    tty, last, pending = sys.stderr.isatty(), [0.0], [note] if note else []

    def show(p: dict) -> None:
        if pending:
            print(f"nbkit train: {pending.pop()}", file=sys.stderr, flush=True)
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


def cmd_train(args) -> None:
    from nbkit.design.comparisons_file import load_study
    from nbkit.design.variants import resolve
    from nbkit.rundir.resume import resumable
    from nbkit.training import distributed
    from nbkit.training.data import load_dataset
    from nbkit.training.trainer import train

    overrides = setting_overrides(args)
    study = load_study(args.comparisons)  # nbkit's variants, and the file's when one is given
    definition = _definition(args, study)
    if args.pack_json:
        return _train_pack(args, overrides, definition)
    note = None  # what was changed for a new run launched here, said once it trains
    if args.resume:
        if args.run_dir or (args.spec and not args.settings_json):
            raise ValueError("give either VARIANT|CONFIG.yml [--run-dir DIR] or --resume RUN_DIR, not both")
        asked = None
        if args.settings_json:  # a sweep's resume: the run it asked for, refused when the folder records another
            asked = (args.spec, settings_argument(json_argument(args.settings_json, "--settings-json",
                                                                "a JSON object of settings"), "--settings-json"))
        name, settings = resumable(args.resume, overrides, asked, study)
    elif not args.spec:
        raise ValueError("train expects a VARIANT or CONFIG.yml (see `nbkit variants`), or --resume RUN_DIR")
    else:
        # a comparisons file's variant passed whole by a sweep is known by its definition alone
        name, settings = (args.spec, None) if args.variant_json else resolve(args.spec, study, **overrides)
        if args.settings_json:  # a sweep's run: its resolved settings, whole
            settings = settings_argument(json_argument(args.settings_json, "--settings-json", "a JSON object of settings"),
                                 "--settings-json").replace(**overrides)
        else:
            from nbkit.design.settings import fit_warmup

            settings, note = fit_warmup(settings, "warmup_num_steps" in overrides)  # a new run launched here
            if name in study.own_variants:  # a comparisons file's variant, by name: its model checked first
                _check_own_models(study, [(name, settings)], load_dataset(settings.dataset, settings.data_dir))
    main_process = distributed.from_env().main  # under torchrun, rank 0 alone reports
    run_dir = train(name, settings, runs_dir=args.runs_dir, device=args.device, label=args.label,
                    progress=_progress_printer(note=note) if main_process else None,
                    run_dir=args.resume or args.run_dir, resume=bool(args.resume), restart=args.restart,
                    definition=definition, tune=_tune_record(args))
    if main_process:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(run_dir)


def _definition(args, study) -> dict | None:
    """What defines the variant trained, for its config.json: a sweep passes a comparisons file's
    variant whole (--variant-json); a variant by name is looked up; a YAML config has none."""
    if args.variant_json:
        definition = json_argument(args.variant_json, "--variant-json", "a JSON object defining the variant")
        if not isinstance(definition, dict) or definition.get("name") != args.spec or not args.spec:
            raise ValueError("--variant-json expects a JSON object whose name is the VARIANT given")
        if not (args.settings_json or args.pack_json):
            raise ValueError("--variant-json goes with --settings-json or --pack-json (how a sweep starts a run)")
        return definition
    if args.resume or not args.spec or str(args.spec).endswith((".yml", ".yaml")):
        return None
    return study.variants[args.spec].definition() if args.spec in study.variants else None


def _tune_record(args) -> dict | None:
    if not args.tune_json:
        return None
    record = json_argument(args.tune_json, "--tune-json", "a JSON object: the trial's study, number and values")
    if not isinstance(record, dict) or not {"study", "trial", "values"} <= set(record):
        raise ValueError("--tune-json expects a JSON object with the trial's study, trial (number) and values")
    return record


def _train_pack(args, overrides: dict, definition: dict | None) -> None:
    """A sweep's pack: new runs of one variant, one per {run_dir, settings}, trained as one model."""
    from nbkit.training.pack import train_pack

    expected = "a JSON list of {run_dir, settings} objects"
    runs = json_argument(args.pack_json, "--pack-json", expected)
    if not isinstance(runs, list) or not all(isinstance(r, dict) and {"run_dir", "settings"} <= set(r) for r in runs):
        raise ValueError(f"--pack-json expects {expected}")
    if not args.spec or args.resume or args.run_dir or args.settings_json:
        raise ValueError("--pack-json goes with a VARIANT alone (not --resume, --run-dir or --settings-json)")
    settings = [settings_argument(r["settings"], "--pack-json settings").replace(**overrides) for r in runs]
    for run_dir in train_pack(args.spec, settings, [r["run_dir"] for r in runs], device=args.device,
                              label=args.label, restart=args.restart, definition=definition):
        print(run_dir)


def cmd_sweep(args) -> None:
    from nbkit.design.comparisons_file import load_study
    from nbkit.errors import FAILED, STOPPED
    from nbkit.sweeps.sweep import plan, run_sweep
    from nbkit.training.data import load_dataset

    overrides = setting_overrides(args)
    study = load_study(args.comparisons)
    jobs = plan(args.names, args.seeds, overrides, args.runs_dir, study)
    own = [j for j in jobs if j.definition]
    subsets = {(s.dataset, s.data_dir, s.val_size, s.train_size, s.train_fraction): None for s in (j.settings for j in jobs)}
    for n, subset in enumerate(subsets):  # fail once, here, before any run folder (a train_size the data
        ds = load_dataset(*subset)        # cannot give among them), and fill the cache for the runs
        if own and n == 0:
            _check_own_models(study, [(j.variant, j.settings) for j in own], ds, args.pack)
    for note in dict.fromkeys(j.note for j in jobs if j.note):  # said once the input is known good
        print(f"nbkit sweep: {note}", file=sys.stderr)
    if args.backend == "ray":
        from nbkit.sweeps.ray_backend import run_sweep_ray

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


def _check_own_models(study, runs: list[tuple[str, object]], ds, pack: int = 1) -> None:
    """Before any run folder is made: the file's models of runs ((variant, settings) pairs) build
    and give (batch, classes) on this dataset, and pack where asked; else the error names the file
    and the variant's key."""
    from nbkit.design.comparisons_file import check_models

    size = ds.images["train"].shape[-1]
    check_models(study, [name for name, _ in runs], ds.num_classes, size)
    if pack > 1:
        from nbkit.training.pack import check_packable

        for name, settings in dict(runs).items():
            check_packable(name, settings, ds.num_classes, size)


def cmd_summary(args) -> None:
    from nbkit.design.comparisons import get_comparison
    from nbkit.design.comparisons_file import load_study
    from nbkit.view.summary import summary_markdown, variant_markdown

    study = load_study(args.comparisons)  # a bad file is refused, whatever is printed
    existing_runs_dir(args.runs_dir)
    if args.scorecard:
        from nbkit.view.scorecard import scorecards_markdown

        print(scorecards_markdown(args.runs_dir, args.dataset))
    elif args.tuning:
        from nbkit.view.tuning_view import tuning_markdown

        variants = get_comparison(args.comparison, study).variants if args.comparison else None
        print(tuning_markdown(args.runs_dir, args.dataset, variants))
    else:
        variants = get_comparison(args.comparison, study).variants if args.comparison else None
        table = variant_markdown if args.by_variant else summary_markdown
        print(table(args.runs_dir, args.dataset, variants=variants))


def cmd_report(args) -> None:
    from nbkit.design.comparisons import get_comparison
    from nbkit.design.comparisons_file import load_study
    from nbkit.view.report import export_all

    study = load_study(args.comparisons)
    existing_runs_dir(args.runs_dir)
    if args.comparison:
        comparisons = [get_comparison(args.comparison, study)]
    else:  # a file's comparisons are what its user came for; else nbkit's
        comparisons = study.own_comparisons or list(study.comparisons.values())
    for path in export_all(args.runs_dir, args.out, args.figures, args.dataset, comparisons=comparisons):
        print(path)
