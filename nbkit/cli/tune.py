"""`nbkit tune`: its options and what it does (the search itself is nbkit.sweeps.tune)."""

from __future__ import annotations

import argparse
import sys

from nbkit.cli.options import add_comparisons, add_where_runs_go, at_least_one, setting_overrides


def add_tune_parser(sub) -> None:
    p = sub.add_parser(
        "tune", help="search each variant's recipe (Optuna), every trial an ordinary run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Tune each variant of the comparisons or variants named over its search space (a\n"
                    "comparisons file's [variants.NAME.search] or [comparisons.NAME.search]): --trials runs\n"
                    "per variant, chosen on a validation split held out of the training set (--val-size,\n"
                    "default a tenth of it, at most 5,000), never on the test set. The study lives in a\n"
                    "database (default: tune.db in the runs directory); running the same command again\n"
                    "continues it: finished trials are kept, interrupted ones resume.",
        epilog="examples:\n"
               "  nbkit tune mine --comparisons examples/tune-study.toml --trials 10 --jobs 2 --device cpu\n"
               "  nbkit tune mine --comparisons FILE --trials 50 --storage postgresql://user@host/db   # many machines\n"
               "  nbkit tune mine --comparisons FILE --trials 50 --backend ray --address auto\n"
               "  nbkit tune mine --comparisons FILE --trials 30 --sampler tpe --prune")
    p.add_argument("names", nargs="+", metavar="COMPARISON|VARIANT", help="comparisons or variants to tune")
    add_comparisons(p)
    p.add_argument("--trials", type=at_least_one, default=10, metavar="N",
                   help="trials per variant: the study's size, counting those already run (default 10)")
    p.add_argument("--sampler", choices=["random", "tpe"], default="random",
                   help="random (default: the budget curves stay unbiased) or tpe (Optuna's TPE)")
    p.add_argument("--search-seed", type=int, default=0, metavar="S",
                   help="seed of the sampler: trial n's random values depend on it, n and the setting (default 0)")
    p.add_argument("--storage", metavar="URL",
                   help="an Optuna storage URL shared by every worker (sqlite:///path.db, postgresql://user@host/db); "
                        "default: an SQLite file tune.db in the runs directory")
    p.add_argument("--prune", action="store_true",
                   help="stop poor trials early by successive halving on val top-1 (default: off; pruned trials "
                        "are left out of the budget curves)")
    add_where_runs_go(p, "trial", jobs="trials at once per GPU, or on the CPU (default 1)")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local (default): processes on this machine; ray: Ray tasks on a cluster")
    p.add_argument("--address", help="with --backend ray: the cluster (auto or HOST:PORT)")
    p.set_defaults(func=cmd_tune)


def default_val_size(train_images: int) -> int:
    """A tenth of the training set, at most 5,000 images."""
    return max(1, min(5000, train_images // 10))


def cmd_tune(args) -> None:
    from nbkit.cli.commands import _check_own_models
    from nbkit.design.comparisons import expand
    from nbkit.design.comparisons_file import load_study
    from nbkit.design.variants import get_variant
    from nbkit.errors import FAILED, STOPPED
    from nbkit.sweeps.sweep import run_sweep, slots
    from nbkit.sweeps.tune import Tuner, best_trials, searches, tune
    from nbkit.training.data import load_dataset

    overrides = setting_overrides(args)
    study = load_study(args.comparisons)
    if args.prune and args.backend == "ray":
        raise ValueError("--prune works with the local backend; with --backend ray trials run to the end")
    first = get_variant(expand(args.names, study)[0], study).settings.replace(**overrides)
    ds = load_dataset(first.dataset, first.data_dir)  # fail once, here, and fill the cache for the trials
    if not overrides.get("val_size"):
        overrides["val_size"] = default_val_size(ds.images["train"].shape[0])
        print(f"nbkit tune: trials are chosen on {overrides['val_size']:,} training images held out as val "
              "(--val-size)", file=sys.stderr)
    items = searches(args.names, overrides, study, args.sampler, args.search_seed, args.prune)
    own = [(s.variant, s.settings) for s in items if s.definition]
    if own:
        _check_own_models(study, own, ds)
    tuner = Tuner(items, args.trials, args.runs_dir, args.storage, args.sampler, args.search_seed, args.prune)
    if args.backend == "ray":
        from nbkit.sweeps.ray_backend import run_sweep_ray

        def run_round(jobs, trials):
            run_sweep_ray(jobs, args.runs_dir, address=args.address, device=args.device, jobs_per_gpu=args.jobs,
                          label=args.label)
        width = args.jobs
    else:
        def run_round(jobs, trials):
            run_sweep(jobs, device=args.device, jobs_per_device=args.jobs, label=args.label,
                      watch=tuner.watch(trials) if args.prune else None)
        width = len(slots(args.device, args.jobs))
    ended = tune(tuner, run_round, width, say=lambda line: print(line, file=sys.stderr))
    for row in best_trials(tuner):
        states = ", ".join(f"{n} {k}" for k, n in sorted(row["states"].items()))
        chosen = (f"best val top-1 {row['val_top1']:.4f} at trial {row['trial']} "
                  f"({', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in row['values'].items())})"
                  if "trial" in row else "no complete trial")
        print(f"{row['variant']}: {states}; {chosen}")
    if ended.get("stopped"):
        raise SystemExit(STOPPED)
    if ended.get("failed"):
        raise SystemExit(FAILED)
