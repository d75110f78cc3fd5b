"""Write a small synthetic dataset in the PASCAL_MT layout (for smoke tests and CI).

Example:
    python tools/make_synthetic_data.py data/PASCAL_MT_synthetic --num-train 64 --num-val 32
"""
import argparse

from mmpoly.datasets import make_synthetic_pascal_mt


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('root', help='output directory (the PASCAL_MT root)')
    parser.add_argument('--num-train', type=int, default=64, help='train images')
    parser.add_argument('--num-val', type=int, default=32, help='val images')
    parser.add_argument('--size', type=int, nargs=2, default=(96, 128), metavar=('H', 'W'),
                        help='image height and width')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    return parser.parse_args()


def main():
    args = parse_args()
    splits = make_synthetic_pascal_mt(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=tuple(args.size),
        seed=args.seed)
    for split, ids in splits.items():
        print(f'{split}: {len(ids)} images of {args.size[0]}x{args.size[1]}')
    print(f'wrote a synthetic PASCAL_MT dataset to {args.root}')


if __name__ == '__main__':
    main()
