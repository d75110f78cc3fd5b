# configs/tadformer-r16_swin-t.py on NYUD-v2: rank 16, everything else as
# configs/tadformer_swin-t_nyud.py.
_base_ = ['./tadformer_swin-t_nyud.py']
model = dict(backbone=dict(tuner=dict(rank=16)))
