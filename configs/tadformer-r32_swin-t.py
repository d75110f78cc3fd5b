# TADFormer with rank 32 (the paper's r = 32 row): everything else as
# configs/tadformer_swin-t.py.
_base_ = ['./tadformer_swin-t.py']
model = dict(backbone=dict(tuner=dict(rank=32)))
