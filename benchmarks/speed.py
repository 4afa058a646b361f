"""Training speed: the original's plain loop against nbkit's trainer, and a sweep.

    python benchmarks/speed.py                         # CPU-sized defaults
    python benchmarks/speed.py --device cuda --steps 300 --sweep-steps 5000 --sweep all --seeds 2

(a) plain loop in the original's style: a torchvision dataset of PIL images with ToTensor in a
    DataLoader without workers, fp32, a host sync per step (loss.item());
(b) nbkit's trainer on the same variant, batch and steps (data on the device, no per-step sync);
    on a GPU twice: as it trains (the step a CUDA graph) and with cuda_graph=false (eager);
(c) a sweep (`nbkit sweep`) of the chosen variants, K runs at a time, timed end to end, with
    the GPU's utilisation sampled during it.
Prints a table and writes JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nbkit import resolve
from nbkit.design.comparisons import expand
from nbkit.design.models import create_model
from nbkit.rundir.reader import find_runs, run_info
from nbkit.training.data import load_dataset
from nbkit.training.distributed import pick_device
from nbkit.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10-images.tar.xz"


def plain_loop(variant: str, dataset, steps: int, batch: int, device: torch.device) -> float:
    """Images per second of the original's loop style (start-up excluded, all steps timed)."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    class PILArrays(Dataset):  # what torchvision's CIFAR classes do per item
        def __init__(self, x, y):
            self.x, self.y, self.t = x.permute(0, 2, 3, 1).numpy(), y.tolist(), transforms.ToTensor()

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.t(Image.fromarray(self.x[i])), self.y[i]

    _, s = resolve(variant)
    torch.manual_seed(0)
    model = create_model(s, dataset.num_classes).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    loader = DataLoader(PILArrays(dataset.images["train"], dataset.labels["train"]), batch_size=batch,
                        shuffle=True, drop_last=True, num_workers=0)
    it = iter(loader)
    start = time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        x, y = x.to(device), y.to(device)
        logits, extras = model(x, y)
        loss = F.cross_entropy(logits, y) + sum(v for k, v in extras.items() if k.startswith("aux/"))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 100)
        opt.step()
        loss.item()  # the per-step host sync of a logging loop
    return steps * batch / (time.perf_counter() - start)


def nbkit_loop(variant: str, dataset, steps: int, batch: int, device: str, runs_dir: Path, **settings) -> float:
    _, s = resolve(variant, max_iter=steps, eval_every=steps, batch_size=batch, save_every=10**9, **settings)
    run = train(variant, s, runs_dir=runs_dir, device=device, dataset=dataset)
    return json.loads((run / "status.json").read_text())["images_per_second"]


class GPUSampler(threading.Thread):
    """nvidia-smi utilisation every second while a sweep runs (empty on machines without it)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.running = [], True

    def run(self):
        while self.running:
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout.split()
                self.samples += [float(v) for v in out]
            except (OSError, ValueError, subprocess.SubprocessError):
                return
            time.sleep(1)


def sweep(names, seeds, jobs, steps, eval_every, dataset, device, runs_dir: Path, extra_sets) -> dict:
    cmd = [sys.executable, "-m", "nbkit", "sweep", *names, "--seeds", str(seeds), "--jobs", str(jobs),
           "--dataset", dataset, "--max-iter", str(steps), "--eval-every", str(eval_every),
           "--device", device, "--runs-dir", str(runs_dir)]
    if extra_sets:
        cmd += ["--set", *extra_sets]
    sampler = GPUSampler()
    sampler.start()
    start = time.perf_counter()
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    wall = time.perf_counter() - start
    sampler.running = False
    infos = [info for info in map(run_info, find_runs(runs_dir)) if info]
    speeds: dict[str, list[float]] = {}
    for info in infos:
        if info["images_per_second"]:
            speeds.setdefault(info["variant"], []).append(info["images_per_second"])
    per_variant = {v: round(sum(x) / len(x), 1) for v, x in speeds.items()}
    util = sampler.samples
    return {"names": names, "runs": len(infos), "seeds": seeds, "jobs": jobs, "steps": steps, "rc": rc,
            "wall_seconds": round(wall, 1), "images_per_second_by_variant": per_variant,
            "gpu_utilisation_mean": round(sum(util) / len(util), 1) if util else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["toy-dilated", "resnet18"])
    ap.add_argument("--steps", type=int, default=30, help="steps timed for (a) and (b)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of (a) and (b); medians reported")
    ap.add_argument("--dataset", default=str(SHARED_CIFAR10) if SHARED_CIFAR10.exists() else "synthetic")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sweep", nargs="*", default=["toy-dilated"], help="comparisons/variants for (c); 'all' = all 23")
    ap.add_argument("--sweep-steps", type=int, default=40)
    ap.add_argument("--sweep-eval-every", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=[], help="settings for the sweep's runs")
    args = ap.parse_args()

    device = pick_device(args.device)
    dataset = load_dataset(args.dataset, ROOT / "data")
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
              "torch": torch.__version__, "dataset": dataset.name, "batch": args.batch, "steps": args.steps,
              "repeats": args.repeats,
              "loops": []}
    cuda = device.type == "cuda"
    print(f"{'variant':<22} {'plain img/s':>12} {'nbkit img/s':>12} {'ratio':>6}" + (f" {'eager img/s':>12}" if cuda else ""))
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            # alternating repeats, medians reported: a shared machine's speed drifts between runs
            times = {"plain": [], "nbkit": [], "eager": []}
            for _ in range(args.repeats):
                times["plain"].append(plain_loop(variant, dataset, args.steps, args.batch, device))
                times["nbkit"].append(nbkit_loop(variant, dataset, args.steps, args.batch, device.type, Path(tmp) / "loops"))
                if cuda:  # what the CUDA graph adds: the same trainer with the step launched op by op
                    times["eager"].append(nbkit_loop(variant, dataset, args.steps, args.batch, device.type,
                                                     Path(tmp) / "loops", cuda_graph=False))
            plain, ours = statistics.median(times["plain"]), statistics.median(times["nbkit"])
            row = {"variant": variant, "plain_images_per_second": round(plain, 1),
                   "nbkit_images_per_second": round(ours, 1), "ratio": round(ours / plain, 3),
                   "repeats": {k: [round(v, 1) for v in vs] for k, vs in times.items() if vs}}
            if cuda:
                row["nbkit_eager_images_per_second"] = round(statistics.median(times["eager"]), 1)
            result["loops"].append(row)
            print(f"{variant:<22} {plain:>12,.0f} {ours:>12,.0f} {ours / plain:>6.2f}"
                  + (f" {row['nbkit_eager_images_per_second']:>12,.0f}" if cuda else ""), flush=True)
        if args.sweep:
            names = expand(["resnets", "learning", "models"]) if args.sweep == ["all"] else args.sweep
            result["sweep"] = sweep(names, args.seeds, args.jobs, args.sweep_steps, args.sweep_eval_every,
                                    args.dataset, device.type, Path(tmp) / "sweep", args.set)
            sw = result["sweep"]
            print(f"sweep: {sw['runs']} runs ({len(names)} variants x {args.seeds} seeds, {args.sweep_steps} steps, "
                  f"{args.jobs} at a time): {sw['wall_seconds']} s wall"
                  + (f", GPU utilisation {sw['gpu_utilisation_mean']}%" if sw["gpu_utilisation_mean"] is not None else ""))
    out = ROOT / "benchmarks" / "results" / f"speed-{device.type}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
