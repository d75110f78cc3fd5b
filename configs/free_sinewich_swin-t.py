# Free Sinewich (Liu et al., CVPR 2026; no code released), r = 64: shared LoRA (scale 4) on qkv,
# proj, fc1 and fc2 of every block; the last block of each stage fuses its factors through a
# trainable r x r W_mid, M = B W_mid A, and forks: task t's proj, fc1 and fc2 use
# W + s G * sin(omega_t M) (G: 7 x 7 Gaussian low-pass, sigma 1), omega_t from a one-layer
# Clock Net on task t's token (96-d), bounded to [1, 10]. Every choice the paper leaves open
# is a key: mmpoly/models/tuners/free_sinewich.py. Here on the Polyhistor protocol (SegFormer
# heads, 512 x 512, the 60-epoch schedule); the paper's protocol:
# mtlora_protocol/free_sinewich_swin-t_hrnet-448.py.
_base_ = ['./_base_/setups/pascal_swin-t.py']
model = dict(
    backbone=dict(
        tuner=dict(
            type='FreeSinewich',
            rank=64,
            shared_scale=4.0,
            dropout=0.05,
            targets=('qkv', 'proj', 'fc1', 'fc2'),
            task_targets=('proj', 'fc1', 'fc2'),
            mid_init='identity',
            clock='task',
            omega_range=(1.0, 10.0),
            lowpass_kernel=7,
            lowpass_sigma=1.0,
            lowpass_padding='zeros',
            train_patch_embed=False,
            train_norms=False,
            train_relative_position_bias=False,
            train_patch_merging=False)))
