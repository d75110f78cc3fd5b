"""Write a small synthetic dataset in the PASCAL_MT or NYUD_MT layout (for smoke tests and CI).

Example:
    python tools/make_synthetic_data.py data/PASCAL_MT_synthetic --num-train 64 --num-val 32
    python tools/make_synthetic_data.py data/NYUD_MT_synthetic --format nyud_mt
"""
import argparse

from mmpoly.datasets import make_synthetic_nyud_mt, make_synthetic_pascal_mt

# format -> (writer, default (height, width), name)
FORMATS = dict(
    pascal_mt=(make_synthetic_pascal_mt, (96, 128), 'PASCAL_MT'),
    nyud_mt=(make_synthetic_nyud_mt, (72, 96), 'NYUD_MT'),
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('root', help='output directory (the dataset root)')
    parser.add_argument('--format', choices=sorted(FORMATS), default='pascal_mt',
                        help='on-disk layout: PASCAL_MT (semseg, human parts, saliency, '
                        'normals, edges from the LabelMap) or NYUD_MT (semseg, depth, '
                        'normals, edges)')
    parser.add_argument('--num-train', type=int, default=64, help='train images')
    parser.add_argument('--num-val', type=int, default=32, help='val images')
    parser.add_argument('--size', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='image height and width (default: 96 128 for pascal_mt, '
                        '72 96 for nyud_mt)')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    return parser.parse_args()


def main():
    args = parse_args()
    make, default_size, name = FORMATS[args.format]
    size = tuple(args.size) if args.size else default_size
    splits = make(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=size,
        seed=args.seed)
    for split, ids in splits.items():
        print(f'{split}: {len(ids)} images of {size[0]}x{size[1]}')
    print(f'wrote a synthetic {name} dataset to {args.root}')


if __name__ == '__main__':
    main()
