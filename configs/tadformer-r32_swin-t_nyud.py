# configs/tadformer-r32_swin-t.py on NYUD-v2: rank 32, everything else as
# configs/tadformer_swin-t_nyud.py.
_base_ = ['./tadformer_swin-t_nyud.py']
model = dict(backbone=dict(tuner=dict(rank=32)))
