"""Download, check, extract and verify a multi-task dataset release in one command.

Examples:
    python tools/prepare_data.py pascal_mt              # -> data/PASCAL_MT
    python tools/prepare_data.py nyud_mt --root data    # -> data/NYUD_MT
    python tools/prepare_data.py pascal_mt --check      # only verify data/PASCAL_MT

The logic lives in ``mmpoly.utils.prepare_data`` (see its docstring).
"""
import sys

from mmpoly.utils.prepare_data import main

if __name__ == '__main__':
    sys.exit(main())
