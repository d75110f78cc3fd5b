# TADFormer with rank 16 (the paper's r = 16 row): everything else as
# configs/tadformer_swin-t.py.
_base_ = ['./tadformer_swin-t.py']
model = dict(backbone=dict(tuner=dict(rank=16)))
