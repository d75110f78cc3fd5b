"""The layer skeleton's TADFormer hooks (``stage_prompts``, ``prompt_linear``,
``prompt_update``, ``linear_at``, ``layer_output``; issue 24) change nothing with their
defaults: every method's demo-Swin outputs equal the ones recorded before the hooks existed.

``FINGERPRINTS`` were recorded at commit 26654bc (the parent of the hooks) by
``fingerprint(method)`` below: float64, seeded weights, every tuner parameter drawn from
N(0, 0.1^2) so that zero-initialised branches (LoRA's B, adapters' up projections) act. Per
output level: the sum and the sum of absolute values. float64 kernels differ between CPUs
(AVX2 / AVX-512) by a few ulps; the tolerance 1e-9 (relative) is far above that and far below
what any change of the computation gives (a tuner branch scaled by 0.1 moves them by > 1e-3).
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmpoly.models.tuners.base import BaseTuner, TaskContext
from mmseg.registry import MODELS
from tests.models.tuners.helpers import TASKS, randomize_tuner
from tests.models.tuners.test_training_all_tuners import DEMO_BASE, REPO, TUNERS

#: methods beyond Table 1, by their Swin-T config
EXTRA = ('mtlora', 'ditask', 'free_sinewich')


def tuner_of(method: str) -> dict:
    if method in TUNERS:
        return TUNERS[method][0]
    return Config.fromfile(osp.join(REPO, 'configs', f'{method}_swin-t.py')
                           ).model.backbone.tuner.to_dict()


def fingerprint(method: str):
    cfg = Config.fromfile(DEMO_BASE).model.backbone.to_dict()  # 96 px: windows padded
    cfg.update(tasks=TASKS, tuner=tuner_of(method), init_cfg=None)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.double().eval()
    randomize_tuner(model, 0.1)
    torch.manual_seed(2)
    x = torch.randn(2, 3, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        outs = model(x)
    return [(o.sum().item(), o.abs().sum().item()) for o in outs]


FINGERPRINTS = {
    'adapter': [
        (589.3408617790463, 60132.61338860097),
        (720.4218262177001, 8050.595568019268),
        (97.30871487765769, 5221.285466633963),
        (177.23425465062786, 4075.050037739271)],
    'bitfit': [
        (-3277.4054702828794, 60441.82002455059),
        (-369.3405846863989, 9356.794903936414),
        (248.87448595151184, 5975.807553733597),
        (-2.6401804661608175, 3878.6871510459823)],
    'compacter': [
        (303.13558995494986, 60308.17564714604),
        (-377.1211674331049, 8699.119875324752),
        (86.5072764013054, 6084.7627974938805),
        (-33.21314887182247, 3869.812424847667)],
    'compacter_pp': [
        (793.0275647853352, 60102.35843142347),
        (322.80476936304393, 7639.835471647741),
        (-78.9101403275915, 5162.97365849477),
        (168.3460328659315, 3743.5293818710456)],
    'decoder_ft': [
        (-13.922005404169148, 29690.89263101353),
        (76.88896397884376, 3336.039040411436),
        (43.50907883920584, 2390.6472442000654),
        (32.72119209270156, 1726.9769773681166)],
    'ditask': [
        (33.86858824971952, 59352.84624930564),
        (-152.25240312911174, 6763.475246233251),
        (-56.48861209978613, 4860.992343638942),
        (115.75507310651658, 3531.1031247900837)],
    'free_sinewich': [
        (-53382.70832430741, 691939.1448753378),
        (50923.06034936007, 852989.540123892),
        (-61337.56932732156, 752783.8131716078),
        (25252.533788809862, 776524.877922429)],
    'hyperformer': [
        (-489.7299252209027, 64644.08231009187),
        (885.2536204221385, 14995.219535270766),
        (154.3176351043443, 7142.856042020584),
        (234.8704365634299, 4684.310014453873)],
    'lora': [
        (-162.93686791957302, 59423.92321626752),
        (58.04087746301546, 6704.71114005006),
        (-119.25185856766342, 4863.913644803906),
        (-14.013927047390734, 3523.7092469715094)],
    'low_rank_adapter': [
        (464.4250475230417, 60695.47571383714),
        (-694.7330687279348, 8938.804143912745),
        (191.55909816912293, 5704.781576736483),
        (131.72336981142584, 3820.8249901299223)],
    'mtlora': [
        (-48416.12630827832, 305025.95130713796),
        (110571.18936493235, 374317.4694987425),
        (-11784.19824326871, 307678.2248056972),
        (2527.9651899021073, 335600.70774646115)],
    'multi_task_ft': [
        (-13.922005404169148, 29690.89263101353),
        (76.88896397884376, 3336.039040411436),
        (43.50907883920584, 2390.6472442000654),
        (32.72119209270156, 1726.9769773681166)],
    'phm': [
        (-1322.1724063715983, 59942.410482796455),
        (-47.76436423196102, 7664.7390588302),
        (-95.71695745608999, 5392.082774373922),
        (-85.89234662616826, 3662.0084521780473)],
    'polyhistor': [
        (1095.663133205289, 62176.91259875166),
        (-2580.279458340441, 10742.149199774849),
        (-509.56136431500886, 6550.91562460543),
        (-300.122997464057, 4427.765440262363)],
    'polyhistor_lite': [
        (3604.5150485394142, 64999.59746329958),
        (261.9638864724951, 7096.889863256138),
        (-111.26861644918989, 5105.576901226649),
        (-376.25176089872275, 3644.7176524808924)],
    'relative_bias': [
        (-27.846645305759182, 59382.02396188051),
        (153.78787978083835, 6671.9770101266795),
        (87.38049326329264, 4781.12022532047),
        (65.56475411546617, 3453.758665403867)],
    'shared_adapter': [
        (-665.7021212292084, 60271.02532506682),
        (832.270007972882, 8093.976343130922),
        (757.3980167945315, 5719.17835732792),
        (-38.64702501478735, 4179.29701654363)],
    'single_task_ft': [
        (-13.922005404169148, 29690.89263101353),
        (76.88896397884376, 3336.039040411436),
        (43.50907883920584, 2390.6472442000654),
        (32.72119209270156, 1726.9769773681166)],
    'vpt_deep': [
        (-63.59874837047073, 59361.42483127633),
        (-13.492522780654499, 6813.803162395619),
        (10.577791992678371, 4810.005539601937),
        (7.728229622013288, 3500.046795771779)],
    'vpt_shallow': [
        (15.447000480032875, 59411.25677168673),
        (163.56780634153256, 6688.147273192404),
        (-109.96054775364139, 4887.775100045961),
        (-39.40397330306822, 3517.457057286374)],
}


@pytest.mark.parametrize('method', sorted([*TUNERS, *EXTRA]))
def test_defaults_leave_every_method_unchanged(method):
    got = fingerprint(method)
    want = FINGERPRINTS[method]
    assert len(got) == len(want)
    for level, (g, w) in enumerate(zip(got, want)):
        assert g == pytest.approx(w, rel=1e-9, abs=1e-9), f'{method}: level {level}'


if __name__ == '__main__':  # prints FINGERPRINTS (run at the parent commit of the hooks)
    print('FINGERPRINTS = {')
    for m in sorted([*TUNERS, *EXTRA]):
        levels = [f'        {level!r}' for level in fingerprint(m)]
        print(f'    {m!r}: [\n' + ',\n'.join(levels) + '],')
    print('}')


class _SideProbe(BaseTuner):
    """'proj' hands its own output back as the side output; ``layer_output`` checks that the
    backbone put it in image order exactly as the attention output (window reverse, shift
    back, crop of the padding) and records which layers saw one."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attn_outs, self.seen = {}, []

    def linear_at(self, ctx, layer, name, module, x, site):
        out = module(x)
        if name != 'proj':
            return out
        assert site.hw == (layer.window_size, layer.window_size) and site.num_prompts == 0
        return out, out

    def attn_branch(self, ctx, layer, x, attn_out):
        self.attn_outs[layer.index] = attn_out
        return attn_out

    def layer_output(self, ctx, layer, x, side):
        assert torch.equal(side, self.attn_outs[layer.index]), layer.name
        self.seen.append(layer.index)
        return x


class _PromptProbe(BaseTuner):
    """One prompt token that crosses the patch mergings (``stage_prompts`` widens it by
    repetition) and is updated by the default rule in every layer."""
    carries_prompts = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.previous = []

    def stage_prompts(self, ctx, stage, previous, batch_size):
        self.previous.append(None if previous is None else previous.clone())
        if previous is None:
            return torch.ones(batch_size, 1, self.layers[0].dim, dtype=torch.float64)
        return previous.repeat(1, 1, 2)

    def layer_prompts(self, ctx, layer, carried, batch_size):
        return carried


def _demo_swin(tuner):
    cfg = Config.fromfile(DEMO_BASE).model.backbone.to_dict()
    cfg.update(tasks=TASKS, tuner=tuner, init_cfg=None)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.double().eval()  # (mmseg's Swin.train returns None)
    return model


def test_side_output_is_put_in_image_order_like_the_attention():
    model = _demo_swin(dict(type=_SideProbe))
    torch.manual_seed(2)
    model(torch.randn(2, 3, 96, 96, dtype=torch.float64))  # 96 px: stages 2, 3 padded
    assert model.tuner.seen == [layer.index for layer in model.layer_infos]


def test_stage_prompts_carry_the_last_layers_prompts_across_the_mergings():
    """Each stage starts from what the stage before carried out: its input prompts after
    every layer's default update (an oracle run layer by layer through ``_layer``)."""
    model = _demo_swin(dict(type=_PromptProbe))
    torch.manual_seed(2)
    x = torch.randn(2, 3, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        model(x)
        seen = model.tuner.previous
        assert seen[0] is None and [p.shape[-1] for p in seen[1:]] == [32, 64, 128]
        # oracle: stage 0 by hand from the patch embedding
        tokens, hw = model.patch_embed(x)
        prompts = torch.ones(2, 1, 32, dtype=torch.float64)
        ctx = TaskContext.shared_batch(len(TASKS))
        for info, block in zip(model.layer_infos[:2], model.stages[0].blocks):
            tokens, prompts = model._layer(ctx, info, block, tokens, hw, prompts)
        assert torch.equal(prompts, seen[1])
