import os
import sys

# Tests import the checkout they live in, even where another mmpoly is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
