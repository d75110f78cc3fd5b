"""The layer skeleton's TADFormer hooks (``stage_prompts``, ``prompt_linear``,
``prompt_update``, ``linear_at`` and its ``Site``, ``layer_output``; issue 24) change
nothing with their defaults: every method's outputs, on the demo Swin and on a tiny PVT, equal
the ones recorded before the hooks existed.

``FINGERPRINTS`` and ``PVT_FINGERPRINTS`` were recorded at commit 26654bc (the parent of the
hooks) by ``fingerprint(method, backbone)`` below (this file run as a module there): float64
throughout, seeded weights, every tuner parameter drawn from N(0, 0.1^2) so that
zero-initialised branches (LoRA's B, adapters' up projections) act. Per output level: the sum
and the sum of absolute values.

Machine independence: the weights are created and drawn in float64 (the default dtype while
the model is built). float32 draws are not the same on every CPU: ``normal_`` and
``trunc_normal_`` take a vectorised kernel with AVX2 / AVX-512 and a scalar one without
(``ATEN_CPU_CAPABILITY=default``, arm64), one float32 ulp apart (3e-7 relative), which moved
these figures by up to 5e-7 of their absolute sums; float64 draws are the same bits with and
without a vector unit. What is left is the order of float64 sums (today's code with AVX2,
AVX-512 and no vector unit against the recorded figures: 6e-15 of the absolute sum at most).
A sum of terms that cancel (a few hundred out of an absolute sum of tens of thousands)
carries the rounding of the terms, not its own, so both figures are bounded by 1e-9 of the
absolute sum (:func:`assert_fingerprint`): far above the kernels' differences and far below
what a change of the computation gives (one tuner tensor scaled by 1.001 moves them by 1e-6
to 5e-3 of the absolute sum: LoRA, Polyhistor-Lite, MTLoRA).
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
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # every weight drawn in float64: see the module doc
    try:
        model = MODELS.build(cfg)
        model.init_weights()
    finally:
        torch.set_default_dtype(default_dtype)
    model.double().eval()
    randomize_tuner(model, 0.1)
    torch.manual_seed(2)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        outs = model(x)
    return [(o.sum().item(), o.abs().sum().item()) for o in outs]


FINGERPRINTS = {
    'adapter': [
        (637.3920295609389, 60135.16592142527),
        (588.5893815579658, 8286.611292527097),
        (-295.2426464317132, 5510.529832358263),
        (213.1826156124572, 4079.7214966511197)],
    'bitfit': [
        (-3492.8849453606013, 60335.271894716876),
        (-576.3148579638987, 8993.743896699823),
        (172.98947414474782, 5933.041663095052),
        (512.1839363174662, 4210.134925440195)],
    'compacter': [
        (250.79751045139324, 60607.436667428745),
        (-809.6705578247606, 8912.508130065358),
        (-103.48471762975802, 5575.30689012704),
        (140.42485598609574, 3780.471388627743)],
    'compacter_pp': [
        (756.7821301675197, 59906.95305387927),
        (183.21512406954744, 7665.5306170559015),
        (474.46242376847994, 5273.478465106506),
        (26.46721772409405, 3763.1730878961534)],
    'decoder_ft': [
        (22.11209606503936, 29782.408550664215),
        (46.72574562934152, 3315.116865328271),
        (63.95048600604862, 2403.710168931667),
        (-33.12424204477192, 1784.3118517675257)],
    'ditask': [
        (51.46425586728287, 59511.43743267156),
        (204.53658906800985, 6873.698145553506),
        (22.811350068454615, 4825.980854460972),
        (18.70043794100345, 3528.932218642615)],
    'free_sinewich': [
        (-51516.06090574316, 688948.3791958084),
        (87443.1688594223, 779840.1456269462),
        (159778.76574160845, 966586.7446530572),
        (48767.18736818062, 708990.3761200735)],
    'hyperformer': [
        (-200.85333202479455, 64539.6499672263),
        (678.6709722733991, 14839.677688958916),
        (136.72972492699458, 8025.84460074016),
        (485.71237145110103, 4763.518005920222)],
    'lora': [
        (-61.108581843093624, 59449.86106275876),
        (-205.6717715366537, 6947.591317818413),
        (-37.72806116148981, 4900.150347876294),
        (242.13379036842335, 3608.7301961037183)],
    'low_rank_adapter': [
        (436.8838280042512, 60172.60164176706),
        (-745.8239832141807, 9035.466268455182),
        (413.45704325685085, 5414.863467298475),
        (-308.1672066315536, 3877.610238924655)],
    'mtlora': [
        (-36085.08710101442, 282482.6780121955),
        (46897.54793300776, 302873.5247113082),
        (25416.24687367578, 301140.1918684817),
        (-48884.853955034334, 332645.06379038916)],
    'multi_task_ft': [
        (22.11209606503936, 29782.408550664215),
        (46.72574562934152, 3315.116865328271),
        (63.95048600604862, 2403.710168931667),
        (-33.12424204477192, 1784.3118517675257)],
    'phm': [
        (-1394.9458601239885, 59781.432222192074),
        (-361.0477798390937, 7683.742349165575),
        (474.7309508201781, 5268.339461588509),
        (47.963828375009086, 3706.5633468987853)],
    'polyhistor': [
        (1164.4056036057154, 63363.577982612136),
        (-2930.470748735287, 11268.318779723644),
        (-691.2481772983363, 6780.2246661932495),
        (-257.89700119194106, 3835.973915161331)],
    'polyhistor_lite': [
        (3425.6687458140805, 64588.49501631393),
        (591.0880834354318, 6996.506469437657),
        (172.38643417758806, 4905.859884264943),
        (175.84012263276307, 3548.253008310952)],
    'relative_bias': [
        (44.21189578077805, 59564.64771862486),
        (93.60653577792397, 6630.09340334355),
        (127.8042520657363, 4807.617011529079),
        (-65.70184304409204, 3568.0399214899353)],
    'shared_adapter': [
        (-517.6997753035109, 60273.395759005565),
        (347.3443032369679, 8470.466348157574),
        (191.1600799993505, 5594.4036613667395),
        (135.421049600738, 4026.3774929088013)],
    'single_task_ft': [
        (22.11209606503936, 29782.408550664215),
        (46.72574562934152, 3315.116865328271),
        (63.95048600604862, 2403.710168931667),
        (-33.12424204477192, 1784.3118517675257)],
    'vpt_deep': [
        (85.23006263553127, 59464.83469779774),
        (-14.004107002684293, 6655.407094307093),
        (81.98124558526628, 4834.488521397632),
        (58.48338954212134, 3516.4578266052276)],
    'vpt_shallow': [
        (-3.539527044359566, 59479.19015365404),
        (239.25977828969, 6806.619080567294),
        (-86.74175221592824, 4872.718065108176),
        (91.37319114685361, 3522.7845241406785)],
}

PVT_FINGERPRINTS = {
    'adapter': [
        (170.36914027641524, 26481.815418549024),
        (227.38868836527874, 13269.334992001874),
        (-54.88270077918229, 8288.666579911041),
        (-35.7810554654362, 3295.9525561230457)],
    'bitfit': [
        (-712.5423314062916, 26895.892844318194),
        (-517.4759990793418, 13571.898576783922),
        (111.66480322770401, 8367.161962767394),
        (40.707836010459474, 3293.3884437603947)],
    'compacter': [
        (272.7346419953114, 26725.066481573333),
        (64.81571430588603, 13407.029776832409),
        (-57.37280925495375, 8309.530241071972),
        (16.280645014493583, 3289.6275367531657)],
    'compacter_pp': [
        (820.6896751013115, 26445.56707229843),
        (-27.592512730597008, 13241.334682928444),
        (17.870351362631947, 8265.402622533778),
        (1.6189070760279627, 3267.7939217673984)],
    'decoder_ft': [
        (-20.3165367156981, 13188.363823944703),
        (-14.493436611518053, 6557.337019893752),
        (-6.432984325633786, 4106.034588721519),
        (-3.7878075675090432, 1631.2060285868536)],
    'hyperformer': [
        (1656.226933271689, 26759.893649197853),
        (-175.96575531631095, 13481.329289725652),
        (282.5608230405393, 8340.89462126491),
        (-29.708217799576964, 3330.001690634824)],
    'lora': [
        (-47.39736578077235, 26393.87792154985),
        (-26.319904875929552, 13120.408247795764),
        (6.823625719270337, 8224.858319226463),
        (18.971738500322033, 3253.470610954667)],
    'low_rank_adapter': [
        (-540.6990673846199, 26622.06289871941),
        (240.16804416519176, 13397.699369913042),
        (38.158431820508156, 8331.755101381967),
        (9.115502918783191, 3298.850498124538)],
    'multi_task_ft': [
        (-20.3165367156981, 13188.363823944703),
        (-14.493436611518053, 6557.337019893752),
        (-6.432984325633786, 4106.034588721519),
        (-3.7878075675090432, 1631.2060285868536)],
    'phm': [
        (-486.13341175224406, 26449.727325168795),
        (191.35335523229998, 13287.6701939567),
        (52.12438183953948, 8281.45285273035),
        (21.43677707646226, 3267.783002475)],
    'polyhistor': [
        (-1158.8580706986852, 26958.026903878716),
        (-500.384134121698, 13643.087443800687),
        (-66.03612411052411, 8477.047517264713),
        (-22.108228153997167, 3343.2776205789346)],
    'polyhistor_lite': [
        (196.41200725695876, 26730.211610590653),
        (75.38758623900716, 13121.24950037595),
        (113.13487055766589, 8217.013460656686),
        (30.460293093095263, 3259.6910388274246)],
    'shared_adapter': [
        (-483.68511414820017, 26521.526221824963),
        (-16.960750946367988, 13233.758332332745),
        (124.13462203340302, 8339.416164021084),
        (11.675903819233552, 3305.7639052861973)],
    'single_task_ft': [
        (-20.3165367156981, 13188.363823944703),
        (-14.493436611518053, 6557.337019893752),
        (-6.432984325633786, 4106.034588721519),
        (-3.7878075675090432, 1631.2060285868536)],
    'vpt_deep': [
        (13.328737181599097, 26399.153359925243),
        (-5.393501648247337, 13098.318175356311),
        (-0.3386431548559974, 8218.012685956686),
        (-10.276451218027931, 3265.345703509035)],
    'vpt_shallow': [
        (-9.307606298322924, 26380.347457651005),
        (-24.9702638529388, 13113.999817481219),
        (19.355089757117042, 8231.621485264925),
        (-9.925390165939058, 3267.3985987231845)],
}


def assert_fingerprint(got, want, method: str) -> None:
    """Each level's (sum, absolute sum) within 1e-9 of its recorded absolute sum."""
    assert len(got) == len(want)
    for level, ((g_sum, g_abs), (w_sum, w_abs)) in enumerate(zip(got, want)):
        bound = 1e-9 * w_abs
        assert abs(g_sum - w_sum) <= bound and abs(g_abs - w_abs) <= bound, \
            f'{method}: level {level}: got ({g_sum!r}, {g_abs!r}), recorded ({w_sum!r}, ' \
            f'{w_abs!r}), bound {bound:.2g}'


@pytest.mark.parametrize('method', sorted([*TUNERS, *EXTRA]))
def test_defaults_leave_every_method_unchanged(method):
    got = fingerprint(method)
    want = FINGERPRINTS[method]
    assert_fingerprint(got, want, method)


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
    assert_fingerprint(got, want, method)
