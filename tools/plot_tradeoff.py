"""Trainable encoder parameters against Δm, as the paper's Figure 3:
``python tools/plot_tradeoff.py WORK_DIR... --out FIG.png [--paper]``.

One labelled point per run (numbers read as ``tools/summarize.py`` reads them: the dumped
config for the parameter count, ``test_metrics.json`` or the last validation metrics for Δm).
The x axis is logarithmic in millions of parameters; a run that trains nothing in the encoder
(decoder fine-tuning, 0 parameters) is drawn at the left edge with a downward triangle and
"(0)" in its label. ``--paper`` adds the paper's Table 1 points (Swin-T, ImageNet-1k) in grey.
"""
import argparse
import math
import os.path as osp
import sys
from typing import List, Sequence

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # summarize.py beside this file

from summarize import load_run  # noqa: E402

# Paper Table 1 (Swin-T, ImageNet-1k): method, trainable encoder parameters (M), Δm (%).
PAPER_POINTS = [
    ('Single-task full fine-tuning', 110.07, 0.00),
    ('Fine-tuning decoders', 0.00, -11.02),
    ('Multi-task full fine-tuning', 27.51, 2.23),
    ('BitFit', 0.30, -4.60),
    ('Relative bias', 0.09, -11.40),
    ('VPT-shallow', 0.02, -11.18),
    ('VPT-deep', 0.88, -10.85),
    ('PHM layer', 0.59, -4.34),
    ('Compacter', 0.23, -4.55),
    ('Compacter++', 0.11, -5.84),
    ('LoRA', 0.32, -2.17),
    ('Adapter', 8.69, -2.71),
    ('Low-rank adapter', 0.34, -4.54),
    ('Shared Adapter', 2.20, -1.83),
    ('Hyperformer', 72.77, 2.64),
    ('Polyhistor', 6.41, 2.34),
    ('Polyhistor-Lite', 0.41, 1.74),
]


def tradeoff_points(work_dirs: Sequence[str], paper: bool = False) -> List[dict]:
    """The points the figure plots: dict(label, params_m, delta_m, source).

    ``params_m`` is the trainable encoder parameter count in millions (0 stays 0 here; the
    figure draws it at its left edge). Runs without a Δm are left out with a warning.
    """
    points = []
    for work_dir in work_dirs:
        row = load_run(work_dir)
        if row['delta_m'] is None:
            print(f'warning: {work_dir} has no delta_m; not plotted', file=sys.stderr)
            continue
        points.append(dict(label=f"{row['run']} ({row['method']})",
                           params_m=row['encoder_params'] / 1e6, delta_m=row['delta_m'],
                           source='run'))
    if paper:
        points += [dict(label=name, params_m=params, delta_m=dm, source='paper')
                   for name, params, dm in PAPER_POINTS]
    return points


def zero_position(points: Sequence[dict]) -> float:
    """Where 0 parameters are drawn: one decade below the smallest positive count."""
    positive = [p['params_m'] for p in points if p['params_m'] > 0]
    return 10 ** (math.floor(math.log10(min(positive))) - 1) if positive else 1e-3


def plot(points: Sequence[dict], out: str, title: str = None) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if not points:
        raise ValueError('nothing to plot')
    zero_x = zero_position(points)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=100)
    styles = dict(run=dict(color='tab:red', s=46, zorder=3),
                  paper=dict(color='0.55', s=26, zorder=2))
    for source, label in (('paper', 'paper, Table 1 (Swin-T)'), ('run', 'runs')):
        chosen = [p for p in points if p['source'] == source]
        for zero in (False, True):
            sel = [p for p in chosen if (p['params_m'] <= 0) == zero]
            if not sel:
                continue
            ax.scatter([zero_x if zero else p['params_m'] for p in sel],
                       [p['delta_m'] for p in sel], marker='v' if zero else 'o',
                       label=None if zero else label, **styles[source])
    ax.set_xscale('log')
    xs = [zero_x if p['params_m'] <= 0 else p['params_m'] for p in points]
    ax.set_xlim(min(xs) / 2, max(xs) * 12)  # room for the labels on the right
    labels = []
    for p in sorted(points, key=lambda p: p['source'] != 'run'):  # runs placed first
        x = zero_x if p['params_m'] <= 0 else p['params_m']
        text = p['label'] + (' (0)' if p['params_m'] <= 0 else '')
        labels.append((x, p['delta_m'], text, styles[p['source']]['color']))
    _place_labels(fig, ax, labels)
    ax.axhline(0.0, color='0.8', lw=0.8, zorder=1)
    ax.set_xlabel('trainable encoder parameters (M, log scale)')
    ax.set_ylabel('Δm (%)')
    ax.set_title(title or 'Multi-task performance vs. trainable encoder parameters')
    ax.grid(True, which='major', alpha=0.3)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


# label offsets (points) tried in turn until a label overlaps no label placed before
_OFFSETS = [(4, 3, 'left'), (4, -10, 'left'), (-4, 3, 'right'), (-4, -10, 'right'),
            (4, 12, 'left'), (-4, 12, 'right'), (4, -19, 'left'), (-4, -19, 'right'),
            (4, 21, 'left'), (-4, -28, 'right')]


def _place_labels(fig, ax, labels) -> None:
    """Annotate every point, moving a label around its point to avoid the others."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for x, y, text, color in labels:
        for i, (dx, dy, ha) in enumerate(_OFFSETS):
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords='offset points',
                              fontsize=7, color=color, ha=ha)
            box = ann.get_window_extent(renderer).expanded(1.02, 1.1)
            if not any(box.overlaps(b) for b in placed) or i == len(_OFFSETS) - 1:
                placed.append(box)
                break
            ann.remove()


def main(argv=None):
    parser = argparse.ArgumentParser(description='Trade-off plot: parameters vs. Δm')
    parser.add_argument('work_dirs', nargs='+', help='work dirs of runs')
    parser.add_argument('--out', required=True, help='output image (e.g. FIG.png)')
    parser.add_argument('--paper', action='store_true', help="add the paper's Table 1 points")
    args = parser.parse_args(argv)
    try:
        points = tradeoff_points(args.work_dirs, paper=args.paper)
    except FileNotFoundError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    plot(points, args.out)
    for p in points:
        print(f"{p['source']:5s}  {p['params_m']:10.4f}M  {p['delta_m']:+8.2f}%  {p['label']}")
    print(f'figure written to {args.out}')


if __name__ == '__main__':
    main()
