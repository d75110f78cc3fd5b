"""The layer skeleton's TADFormer hooks (``stage_prompts``, ``prompt_linear``,
``prompt_update``, ``linear_at`` and its ``Site``, ``layer_output``; issue 24) change
nothing with their defaults: every method's outputs, on the demo Swin and on a tiny PVT, equal
the ones recorded before the hooks existed.

``FINGERPRINTS`` and ``PVT_FINGERPRINTS`` were recorded at commit 26654bc (the parent of the
hooks) by ``fingerprint(method, backbone)`` below (this file run as a module there): float64,
seeded weights, every tuner parameter drawn from N(0, 0.1^2) so that zero-initialised
branches (LoRA's B, adapters' up projections) act. Per
output level: the sum and the sum of absolute values. float64 kernels differ between CPUs
(AVX2 / AVX-512) by a few ulps; the tolerance 1e-9 (relative) is far above that and far below
what any change of the computation gives (a tuner branch scaled by 0.1 moves them by > 1e-3).
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmpoly.models.tuners.base import BaseTuner, TaskContext
from mmseg.registry import MODELS
from tests.models.backbones.test_polyhistor_pvt import TINY as PVT_TINY
from tests.models.tuners.helpers import TASKS, randomize_tuner
from tests.models.tuners.test_training_all_tuners import DEMO_BASE, REPO, TUNERS

#: methods beyond Table 1, by their Swin-T config
EXTRA = ('mtlora', 'ditask', 'free_sinewich')
#: the methods with a PVT-S config
PVT_METHODS = sorted(osp.basename(p)[:-len('_pvt-s.py')]
                     for p in glob.glob(osp.join(REPO, 'configs', '*_pvt-s.py')))


def tuner_of(method: str) -> dict:
    if method in TUNERS:
        return TUNERS[method][0]
    return Config.fromfile(osp.join(REPO, 'configs', f'{method}_swin-t.py')
                           ).model.backbone.tuner.to_dict()


def fingerprint(method: str, backbone: str = 'swin'):
    """Swin: the demo Swin at 96 px (windows padded); PVT: the tiny PVT at twice its width
    (as test_init_vs_frozen) with the method's PVT-S tuner, at 64 px."""
    if backbone == 'swin':
        cfg = Config.fromfile(DEMO_BASE).model.backbone.to_dict()
        cfg.update(tasks=TASKS, tuner=tuner_of(method), init_cfg=None)
        size = 96
    else:
        tuner = Config.fromfile(osp.join(REPO, 'configs', f'{method}_pvt-s.py')
                                ).model.backbone.tuner.to_dict()
        cfg = dict(type='PolyhistorPVT', **dict(PVT_TINY, embed_dims=(32, 64, 160, 256)),
                   tasks=TASKS, tuner=tuner)
        size = 64
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.double().eval()
    randomize_tuner(model, 0.1)
    torch.manual_seed(2)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
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

PVT_FINGERPRINTS = {
    'adapter': [
        (143.76884260896648, 26524.54895267595),
        (286.6278788504062, 13206.139408031926),
        (-36.66567152695704, 8286.692984279143),
        (-28.249696931906314, 3307.2127285637116)],
    'bitfit': [
        (-614.2997597862538, 26949.436705588458),
        (-483.02307906748104, 13565.722615728522),
        (212.13931800981445, 8277.495068797285),
        (70.00346157433314, 3302.7608693001857)],
    'compacter': [
        (263.95935474038845, 26663.952576989162),
        (58.9925020770392, 13328.296783141801),
        (-34.684629083973746, 8285.010978549682),
        (39.17693148021945, 3330.3321453874732)],
    'compacter_pp': [
        (816.8675401926794, 26637.044260819388),
        (-42.67966832961279, 13226.403194142684),
        (-31.972413926518854, 8261.343624421876),
        (22.6270230807171, 3328.6250164723674)],
    'decoder_ft': [
        (32.45057959627659, 13196.926542509864),
        (-10.276936822765556, 6567.715030029263),
        (21.24665833548906, 4093.524755965357),
        (11.206950105390717, 1648.2718050566118)],
    'hyperformer': [
        (1631.1858602899422, 26657.692193122988),
        (-5.0696666753601765, 13715.342633311051),
        (208.50145387311096, 8369.642633501182),
        (-32.794808700708884, 3383.8487734226587)],
    'lora': [
        (24.580914645033328, 26424.32604809056),
        (32.45512610358738, 13128.9501690254),
        (30.13537956497539, 8222.140292860247),
        (14.463958377482609, 3290.815684368237)],
    'low_rank_adapter': [
        (-552.5249367474535, 26605.15368384788),
        (266.22363902303357, 13482.717291137826),
        (35.35891493614524, 8262.976194698922),
        (35.81803732416923, 3331.7978787526527)],
    'multi_task_ft': [
        (32.45057959627659, 13196.926542509864),
        (-10.276936822765556, 6567.715030029263),
        (21.24665833548906, 4093.524755965357),
        (11.206950105390717, 1648.2718050566118)],
    'phm': [
        (-506.34008082737, 26480.961330515755),
        (194.50389545744127, 13209.610890296524),
        (70.51278852764285, 8239.470495964128),
        (37.46322485607858, 3323.687297269973)],
    'polyhistor': [
        (-1154.0585669687214, 26977.162614313245),
        (-478.4828917081496, 13557.473578853916),
        (-39.99063578350986, 8557.325249564448),
        (37.99904303296444, 3341.6354508260074)],
    'polyhistor_lite': [
        (226.33495526725073, 27007.50769942759),
        (71.87515220439685, 13138.578445828345),
        (56.786742883955384, 8191.9892108399345),
        (5.445460206216648, 3304.9811473365667)],
    'shared_adapter': [
        (-460.75906074001233, 26526.64343721287),
        (-0.398764942350607, 13292.695878603396),
        (58.914874266873966, 8282.414223671629),
        (5.513171090571387, 3319.7193022103315)],
    'single_task_ft': [
        (32.45057959627659, 13196.926542509864),
        (-10.276936822765556, 6567.715030029263),
        (21.24665833548906, 4093.524755965357),
        (11.206950105390717, 1648.2718050566118)],
    'vpt_deep': [
        (-34.62895474285648, 26376.88306178769),
        (11.275296276940812, 13123.355432607375),
        (0.8022863450028979, 8202.516364890806),
        (7.211307415951344, 3293.6668909214486)],
    'vpt_shallow': [
        (-7.066135047068589, 26405.469954850385),
        (-1.649349636706741, 13111.851243796145),
        (34.02200787455843, 8211.410199174145),
        (14.679374034630882, 3291.161512781272)],
}


@pytest.mark.parametrize('method', sorted([*TUNERS, *EXTRA]))
def test_defaults_leave_every_method_unchanged(method):
    got = fingerprint(method)
    want = FINGERPRINTS[method]
    assert len(got) == len(want)
    for level, (g, w) in enumerate(zip(got, want)):
        assert g == pytest.approx(w, rel=1e-9, abs=1e-9), f'{method}: level {level}'


if __name__ == '__main__':  # prints FINGERPRINTS (run at the parent commit of the hooks)
    for name, methods, backbone in (('FINGERPRINTS', sorted([*TUNERS, *EXTRA]), 'swin'),
                                    ('PVT_FINGERPRINTS', PVT_METHODS, 'pvt')):
        print(f'{name} = {{')
        for m in methods:
            levels = [f'        {level!r}' for level in fingerprint(m, backbone)]
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


@pytest.mark.parametrize('method', PVT_METHODS)
def test_defaults_leave_every_method_unchanged_on_pvt(method):
    got = fingerprint(method, 'pvt')
    want = PVT_FINGERPRINTS[method]
    assert len(got) == len(want)
    for level, (g, w) in enumerate(zip(got, want)):
        assert g == pytest.approx(w, rel=1e-9, abs=1e-9), f'{method}: level {level}'
