"""Seconds per image of the edge metric (ODS / OIS at 99 thresholds), on synthetic maps.

    python tools/benchmark_edges.py [--height 480] [--width 640] [--images 2]
        [--max-dist 0.011] [--seed 0] [--impl compiled|reference] [--json]
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--images', type=int, default=2)
    parser.add_argument('--max-dist', type=float, default=0.011,
                        help='tolerance, fraction of the diagonal (NYUD 0.011, PASCAL 0.0075)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--impl', default='compiled', choices=('compiled', 'reference'),
                        help='reference: scikit-image thinning and a scipy maximum flow (the '
                        'implementation the compiled one replaced; same counts)')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    from mmpoly.benchmark.edges import time_edge_eval
    result = time_edge_eval(args.height, args.width, args.images, args.max_dist, args.seed,
                            args.impl)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.height} x {args.width}, max_dist {args.max_dist}, {args.impl}: "
              f"{result['seconds_per_image']:.2f} s per image (median of {args.images}; "
              f"{', '.join(f'{s:.2f}' for s in result['seconds'])}; CPU "
              f"{result['cpu_seconds_per_image']:.2f} s)")


if __name__ == '__main__':
    main()
