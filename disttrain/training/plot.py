"""`dtrun plot RUN_DIR`: training loss and validation accuracy against steps, to a PNG.

matplotlib is an optional extra (`pip install "disttrain[plot]"`).
"""
import os

from .metrics import read_metrics


class PlotError(Exception):
    """Why no plot could be drawn (the message says what to do)."""


def plot_run(run_dir, output=None):
    path = os.path.join(run_dir, "metrics.jsonl")
    records = read_metrics(path)
    if not records:
        raise PlotError(f"{path}: no metrics to plot (is {run_dir} a run directory of a job that has logged a step?)")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError('dtrun plot needs matplotlib, an optional extra: pip install "disttrain[plot]" '
                        "(or pip install matplotlib)") from None
    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if evals:
        ax_loss.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="validation loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_acc.plot([r["step"] for r in train], [r["accuracy"] for r in train], label="train accuracy")
    if evals:
        ax_acc.plot([r["step"] for r in evals], [r["val_accuracy"] for r in evals], "o-", label="validation accuracy")
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend()
    fig.suptitle(os.path.basename(os.path.normpath(run_dir)))
    fig.tight_layout()
    output = output or os.path.join(run_dir, "curves.png")
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
