"""A segmentor with one shared (or per-task) encoder and one decoder per task."""
import copy
from typing import Any, Dict, List, Mapping, Optional, Sequence

from mmengine.structures import PixelData
from torch import Tensor, nn

from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from ...tasks import TaskSpec, resolve_task_specs
from ..profiling import profile_range


@MODELS.register_module()
class MultiTaskEncoderDecoder(BaseSegmentor):
    """Encoder (backbone + tuner) -> one feature pyramid per task -> one decoder per task.

    Args:
        backbone: backbone config; ``tasks`` is filled in from this segmentor.
        decode_head: ``MultiTaskSegformerHead`` config; ``tasks`` filled in likewise.
        tasks: task names, in order (or a dict task -> ``TaskSpec`` fields).
        task_source: the dataset class (registered type name) whose
            ``METAINFO['task_specs']`` declares the tasks; a dataset base config sets it.
        task_specs: task -> ``TaskSpec`` fields, overriding the source's field by field
            (complete specs need no source); the resolved specs go to the head and the
            data preprocessor.
        backbone_per_task: build one backbone per task (single-task full fine-tuning);
            otherwise one backbone serves all tasks, once per task if its tuner is
            task-specific (on a task-stacked batch) and once in total if not.
        data_preprocessor, train_cfg, test_cfg, init_cfg: as in mmseg segmentors.
        pretrained: accepted for mmseg's ``init_model`` (which sets it to None); the weights
            of the backbone are its ``init_cfg``.
    """

    def __init__(self,
                 backbone: dict,
                 decode_head: dict,
                 tasks: Sequence[str],
                 task_source: Optional[str] = None,
                 task_specs: Optional[Mapping[str, Any]] = None,
                 backbone_per_task: bool = False,
                 data_preprocessor: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg=None,
                 pretrained: Optional[str] = None):
        if pretrained is not None:
            raise ValueError(f'model.pretrained={pretrained!r}: set the backbone\'s weights '
                             'with model.backbone.init_cfg=dict(type=\'Pretrained\', '
                             'checkpoint=...)')
        self.task_specs = resolve_task_specs(tasks, task_specs, where='model.tasks',
                                             source=task_source)
        specs = {t: s.to_dict() for t, s in self.task_specs.items()}
        if (isinstance(data_preprocessor, dict)
                and data_preprocessor.get('type') == 'MultiTaskDataPreProcessor'
                and data_preprocessor.get('tasks') is None):
            data_preprocessor = dict(data_preprocessor, tasks=tuple(specs), task_specs=specs)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.tasks = tuple(self.task_specs)
        self.backbone_per_task = backbone_per_task
        if backbone_per_task:
            self.backbones = nn.ModuleDict({
                task: MODELS.build(dict(copy.deepcopy(backbone), tasks=(task, )))
                for task in self.tasks
            })
        else:
            self.backbone = MODELS.build(dict(backbone, tasks=self.tasks))
        self.decode_head = MODELS.build(dict(decode_head, tasks=self.tasks, task_specs=specs))
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    # ------------------------------------------------------------------ features
    def extract_feat(self, inputs: Tensor) -> Dict[str, List[Tensor]]:
        """task -> that task's feature pyramid."""
        with profile_range('backbone'):
            if self.backbone_per_task:
                return {task: self.backbones[task](inputs) for task in self.tasks}
            feats = self.backbone(inputs)
        if not self.backbone.per_task_features:  # one map per level serves every task
            return {task: feats for task in self.tasks}
        per_level = [level.chunk(len(self.tasks), dim=0) for level in feats]
        return {task: [chunks[t] for chunks in per_level] for t, task in enumerate(self.tasks)}

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]):
        return self.decode_head.predict(self.extract_feat(inputs), batch_img_metas)

    # ------------------------------------------------------------------ modes
    def loss(self, inputs: Tensor, data_samples) -> Dict[str, Tensor]:
        return self.decode_head.loss(self.extract_feat(inputs), data_samples)

    def predict(self, inputs: Tensor, data_samples=None):
        if data_samples is None:
            metas = [dict(ori_shape=inputs.shape[2:], img_shape=inputs.shape[2:],
                          batch_input_shape=inputs.shape[2:])] * inputs.shape[0]
        else:
            metas = [s.metainfo for s in data_samples]
        logits = self.encode_decode(inputs, metas)
        return self.postprocess_result(logits, data_samples)

    def _forward(self, inputs: Tensor, data_samples=None) -> Dict[str, Tensor]:
        return self.decode_head(self.extract_feat(inputs))

    def postprocess_result(self, logits: Dict[str, List[Tensor]], data_samples=None):
        """Turn each task's logits (at the original size) into ``pred_<task>`` fields."""
        num = len(next(iter(logits.values())))
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(num)]
        for task, per_image in logits.items():
            for sample, x in zip(data_samples, per_image):
                if not bool(x.isfinite().all()):
                    path = sample.metainfo.get('img_path')
                    raise FloatingPointError(
                        f'non-finite {task} logits (NaN/Inf) for '
                        f"{'image ' + str(path) if path else 'an input image'}: the model "
                        'diverged (non-finite or huge weights); use a checkpoint written '
                        'before the divergence')
                sample.set_data({f'pred_{task}': PixelData(
                    data=logits_to_prediction(self.task_specs[task], x))})
        return data_samples


def logits_to_prediction(spec: TaskSpec, logits: Tensor) -> Tensor:
    """(C, H, W) logits -> by the task's kind (``TaskKind.predict``): class ids (1, H, W),
    probability (1, H, W), unit normals (3, H, W) or the regressed values themselves."""
    return spec.task_kind.predict(logits)
