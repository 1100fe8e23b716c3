"""docs/gpu_moe.png from a saved run of bench/gpu_moe.py: decoded tokens/s against batch size per config.

    python bench/gpu_moe_plot.py bench/results/gpu_moe.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def plot(results_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(results_path.read_text())
    runs = [r for r in data["configs"].values() if "decode" in r]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        batches = [r["batch"] for r in run["decode"]]
        ax.plot(batches, [r["ours_tok_s"] for r in run["decode"]], "o-", label="Zhiku model/ (CUDA graph)")
        if all("ours_compiled_tok_s" in r for r in run["decode"]):
            ax.plot(batches, [r["ours_compiled_tok_s"] for r in run["decode"]], "^-",
                    label="Zhiku model/ (CUDA graph, compiled layers)")
        ax.plot(batches, [r["transformers_tok_s"] for r in run["decode"]], "s-", label="transformers generate")
        bound = run["copy_bandwidth_bytes_s"] / run["bytes_per_token_batch1"]
        ax.axhline(bound, ls="--", c="grey", label=f"HBM bound at batch 1 ({bound:.0f} tok/s)")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="decoded tokens/s",
               title=f"{run['config']} ({run['parameters'] / 1e9:.1f} B params), {run['machine']['gpu']}")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.legend(fontsize=8)
    out = Path("docs/gpu_moe.png")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


if __name__ == "__main__":
    print(plot(Path(sys.argv[1])))
