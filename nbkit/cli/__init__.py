"""The command line, `nbkit` or `python -m nbkit`: list variants, train, sweep, tune, summarise, report.
The parser and the exit codes here; what each command does in nbkit.cli.commands, the options they
share in nbkit.cli.options."""

from __future__ import annotations

import argparse
import sys

from nbkit.cli.commands import cmd_report, cmd_summary, cmd_sweep, cmd_train, cmd_variants
from nbkit.cli.options import add_comparisons, add_runs_dir, add_setting_flags, add_where_runs_go, at_least_one
from nbkit.cli.tune import add_tune_parser


class Parser(argparse.ArgumentParser):
    """argparse's parser with a mistyped option said in one line (not the usage's ten)."""

    def error(self, message: str):
        from nbkit.errors import terminal

        self.exit(2, f"{self.prog}: error: {terminal(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nbkit", description="Compare image-classification models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("variants", help="list the variants with description and parameter count")
    p.add_argument("--num-classes", type=at_least_one, default=100, help="class count of the dataset (default 100)")
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
    p.add_argument("--tune-json", metavar="JSON",
                   help="a tuning trial's study, number and sampled values as one JSON object (how `nbkit tune` "
                        "starts a trial); recorded in config.json")
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
    add_where_runs_go(p, "run", jobs="runs at once per GPU, or on the CPU (default 1); with --backend ray, runs "
                                      "sharing one GPU")
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
    add_tune_parser(sub)

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
    p.add_argument("--tuning", action="store_true",
                   help="the runs' tuning trials (nbkit tune): expected best val top-1 after 1, 5 and all trials, "
                        "the chosen trial's test top-1 and settings, the ranking by budget (default: off)")
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
    from nbkit.errors import OK, RunBusy, RunStopped, exit_code

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
            from nbkit.errors import terminal

            kind = "" if isinstance(e, (ValueError, OSError, RunBusy)) else f"{type(e).__name__}: "
            print(f"nbkit {args.command}: error: {kind}{terminal(one_line(e))}", file=sys.stderr)
        return exit_code(e)
    return OK


def run() -> None:
    """The `nbkit` command: main, then exit with its code. A process that stopped on a signal
    ignores later ones while it exits: another Ctrl-C would only break the interpreter's own
    shutdown with a traceback, after the run is already checkpointed and marked stopped."""
    import signal

    from nbkit.errors import STOPPED, ignore_signals_after_a_stop

    ignore_signals_after_a_stop()
    code = main()
    if code == STOPPED:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
    sys.exit(code)
