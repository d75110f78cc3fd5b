# CPU demo of configs/decoder_ft_swin-t_nyud.py: the PASCAL demo's narrow Swin, frozen
# (decoders only), on the synthetic NYUD_MT (semseg, depth, normals, edge), a short schedule.
_base_ = ['../_base_/setups/synthetic-nyud_swin-tiny.py']
model = dict(backbone=dict(tuner=dict(type='NoTuner')))
