"""The base of a multi-task dataset: its tasks and their specs come from its METAINFO."""
import os.path as osp
from typing import List, Optional, Sequence

from mmengine.dataset import BaseDataset

from mmpoly.tasks import resolve_task_specs
from mmpoly.engine.exact_resume import EpochSeededDataset


class MultiTaskDataset(EpochSeededDataset, BaseDataset):
    """A dataset whose samples carry one label per task.

    A subclass declares ``METAINFO = dict(tasks=(...), task_specs={task: dict(kind=...,
    num_outputs=..., label_format=..., ...)})`` (``mmpoly.tasks.TaskSpec`` fields) and
    implements ``load_data_list``, whose data infos hold ``img_path`` and ``label_paths``
    (task -> path). The config picks a subset of the tasks (``tasks``) and may override
    spec fields (``metainfo=dict(task_specs=dict(task=dict(...)))``).

    The resolved specs are in ``metainfo['task_specs']`` (plain dicts, as checkpoints and
    the metric's ``dataset_meta`` receive them) and in every sample's
    ``results['task_specs']`` (``TaskSpec`` objects, read by the transforms).
    """
    METAINFO: dict = dict(tasks=(), task_specs={})

    def __init__(self, tasks: Optional[Sequence[str]] = None, metainfo: Optional[dict] = None,
                 **kwargs):
        metainfo = dict(metainfo or {})
        own = dict(self.METAINFO.get('task_specs') or {})
        given = dict(metainfo.get('task_specs') or {})
        merged = {t: dict(own.get(t) or {}, **(given.get(t) or {})) for t in {**own, **given}}
        if tasks is None:
            tasks = self.METAINFO.get('tasks') or tuple(merged)
        self.task_specs = resolve_task_specs(
            tasks, merged, where=f'{self.__class__.__name__}.tasks')
        self.tasks = tuple(self.task_specs)
        metainfo.update(tasks=self.tasks,
                        task_specs={t: s.to_dict() for t, s in self.task_specs.items()})
        super().__init__(metainfo=metainfo, **kwargs)

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        info.setdefault('tasks', self.tasks)
        info['task_specs'] = self.task_specs
        return info

    def read_split(self, split_file: str, hint: str) -> List[str]:
        """The image ids of a split file (one a line). A missing data root (``hint``: how to
        get it), a missing or an empty split file is an error naming it."""
        if not osp.isdir(self.data_root):
            raise FileNotFoundError(f'{type(self).__name__}: data_root not found: '
                                    f'{self.data_root} ({hint})')
        if not osp.isfile(split_file):
            raise FileNotFoundError(f'split file of split {self.split!r} not found: '
                                    f'{split_file}')
        with open(split_file) as f:
            img_ids = [line.strip() for line in f if line.strip()]
        if not img_ids:
            raise ValueError(f'split file {split_file} lists no image')
        return img_ids
