"""The paper's parameter figures as printed (Liu et al. 2022, Swin-T, 4 tasks, millions).

Data only: ``tools/count_params.py --paper`` sets our counts beside them, and the tests hold
every row to the printed digits. Table 1: encoder and all trainable parameters per method;
Table 2: Polyhistor-Lite's task-embedding size k; Table 5: Polyhistor's rank. Each ablation
row is the Swin-T config with ``--cfg-options``.
"""
from collections import OrderedDict

#: method (config prefix) -> (row name, paper encoder, paper all), Table 1's order
TABLE1 = OrderedDict([
    ('single_task_ft', ('Single-task full fine-tuning', 110.07, 112.62)),
    ('decoder_ft', ('Fine-tuning decoders', 0.00, 2.55)),
    ('multi_task_ft', ('Multi-task full fine-tuning', 27.51, 30.06)),
    ('bitfit', ('BitFit', 0.30, 2.85)),
    ('relative_bias', ('Relative bias', 0.09, 2.64)),
    ('vpt_shallow', ('VPT-shallow', 0.02, 2.57)),
    ('vpt_deep', ('VPT-deep', 0.88, 3.43)),
    ('phm', ('PHM layer', 0.59, 3.14)),
    ('compacter', ('Compacter', 0.23, 2.78)),
    ('compacter_pp', ('Compacter++', 0.11, 2.66)),
    ('lora', ('LoRA', 0.32, 2.87)),
    ('adapter', ('Adapter', 8.69, 11.24)),
    ('low_rank_adapter', ('Low-rank adapter', 0.34, 2.89)),
    ('shared_adapter', ('Shared Adapter', 2.20, 4.74)),
    ('hyperformer', ('Hyperformer', 72.77, 75.32)),
    ('polyhistor', ('Polyhistor', 6.41, 8.96)),
    ('polyhistor_lite', ('Polyhistor-Lite', 0.41, 2.96)),
])

#: rows whose printed encoder figure is our count truncated, not rounded, with the reason
TRUNCATED_IN_PAPER = {
    'multi_task_ft': 'the real Swin-T without its output norms (27,517,818, method.md s. 7) '
                     'is 27.5178M; the paper prints 27.51',
}

#: (table, row label, config, cfg-options, paper encoder)
ABLATIONS = (
    ('Table 5', 'r = 1', 'polyhistor_swin-t', {'model.backbone.tuner.rank': 1}, 2.38),
    ('Table 5', 'r = n/8', 'polyhistor_swin-t', {'model.backbone.tuner.rank_ratio': 0.125}, 4.08),
    ('Table 5', 'r = n/4', 'polyhistor_swin-t', {}, 6.41),
    ('Table 5', 'r = n/2', 'polyhistor_swin-t', {'model.backbone.tuner.rank_ratio': 0.5}, 11.08),
    ('Table 2', 'k = 16', 'polyhistor_lite_swin-t', {'model.backbone.tuner.task_embed_dim': 16},
     0.23),
    ('Table 2', 'k = 32', 'polyhistor_lite_swin-t', {'model.backbone.tuner.task_embed_dim': 32},
     0.29),
    ('Table 2', 'k = 64', 'polyhistor_lite_swin-t', {}, 0.41),
)


def printed(count: int) -> float:
    """A parameter count as the paper prints it: millions, two decimals."""
    return round(count / 1e6, 2)
