"""Train on an rMD17 split-01 training file under a wall-clock budget and report
test-set errors on the matching test file.

950 training / 50 validation structures (from the 1,000 of the training
file), 1,000 test structures. Prints one JSON line and writes it to
benchmarks/results/rmd17_<molecule>_<model>.json.

    python benchmarks/rmd17.py --molecule ethanol --budget 1200 --tag cosine \
        model.zetas=[1,2,4,8] model.n_angular_radial=8 model.hidden=[128,128] \
        training.scheduler=cosine
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import mlipkit
from mlipkit.training.config import config_from_overrides, load_config
from mlipkit.training.run import train

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data" / "rmd17"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="ethanol")
    parser.add_argument("--budget", type=float, default=1200.0,
                        help="training seconds in all (shared equally by ensemble members)")
    parser.add_argument("--ensemble", type=int, default=1,
                        help="members trained one after another; the model is their mean")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", type=Path, help="a YAML config to start from")
    parser.add_argument("--data", type=Path, default=DATA,
                        help="folder holding rmd17_<molecule>_{train,test}_01.npz")
    parser.add_argument("--output", type=Path, default=Path("runs/rmd17"))
    parser.add_argument("--tag", default="", help="suffix of the result file name")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.lr=5e-4")
    args = parser.parse_args()

    train_file = args.data / f"rmd17_{args.molecule}_train_01.npz"
    test_file = args.data / f"rmd17_{args.molecule}_test_01.npz"
    output = args.output / f"{args.molecule}_{int(time.time())}"
    overrides = [f"data.train={train_file}", f"data.test={test_file}",
                 "data.valid_fraction=0.05", f"training.max_time={args.budget / args.ensemble}",
                 f"training.ensemble={args.ensemble}",
                 f"training.dtype={args.dtype}", f"training.device={args.device}",
                 f"output={output}", *args.overrides]
    if args.config:
        config = load_config(args.config, overrides)
    else:
        config = config_from_overrides(overrides)
    t0 = time.perf_counter()
    metrics = train(config, progress=False)
    wall = time.perf_counter() - t0
    test = metrics["test"]
    record = {
        "benchmark": "rmd17",
        "molecule": args.molecule,
        "model": config.model.type,
        "model_config": config.to_dict()["model"],
        "overrides": args.overrides,
        "budget_s": args.budget,
        "ensemble": args.ensemble,
        "wall_s": round(wall, 1),
        "dtype": args.dtype,
        "device": args.device,
        "device_name": (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
                        else platform.processor() or platform.machine()),
        "n_train": 950,
        "n_test": test["n_structures"],
        "test_energy_mae_meV": test["energy_mae"] * 1000,
        "test_forces_mae_meV_per_A": test["forces_mae"] * 1000,
        "test_forces_rmse_meV_per_A": test["forces_rmse"] * 1000,
        "valid_forces_mae_meV_per_A": metrics["valid"]["forces_mae"] * 1000,
        "epochs": _epochs(output),
        "mlipkit": mlipkit.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "output": str(output),
    }
    line = json.dumps(record)
    print(line)
    tag = f"_{args.tag}" if args.tag else ""
    result = ROOT / "results" / f"rmd17_{args.molecule}_{config.model.type}{tag}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text(line + "\n")


def _epochs(output: Path) -> int | list[int]:
    """Epochs run (one count per ensemble member)."""
    counts = [max(0, len(log.read_text().splitlines()) - 1)
              for log in sorted(output.glob("**/log.csv"))]
    return counts[0] if len(counts) == 1 else counts


if __name__ == "__main__":
    main()
