"""PASCAL-Context MT's label vocabulary, one copy for the real dataset
(``pascal_context_mt.py``) and its synthetic twin (``synthetic.py``): class names, colours and
the Pascal-Part person parts."""
from mmpoly.task_kinds import VOC_PALETTE

# The 21 VOC classes of the semseg maps (the order of the label ids).
VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
HUMAN_PARTS_CLASSES = ('background', 'head', 'torso', 'upper arm', 'lower arm', 'upper leg',
                       'lower leg')
HUMAN_PARTS_PALETTE = VOC_PALETTE[:len(HUMAN_PARTS_CLASSES)]

# VOC class id of 'person' in the Pascal-Part annotations (human_parts/<id>.mat).
PERSON_CLASS = 15

# The 24 Pascal-Part person part names -> our 7 classes (0 = background).
PART_NAME_TO_CLASS = {
    **dict.fromkeys(('hair', 'head', 'lear', 'lebrow', 'leye', 'mouth', 'nose', 'rear',
                     'rebrow', 'reye'), 1),
    **dict.fromkeys(('neck', 'torso'), 2),
    **dict.fromkeys(('luarm', 'ruarm'), 3),
    **dict.fromkeys(('llarm', 'rlarm', 'lhand', 'rhand'), 4),
    **dict.fromkeys(('luleg', 'ruleg'), 5),
    **dict.fromkeys(('llleg', 'rlleg', 'lfoot', 'rfoot'), 6),
}

__all__ = ['VOC_CLASSES', 'VOC_PALETTE', 'HUMAN_PARTS_CLASSES', 'HUMAN_PARTS_PALETTE',
           'PERSON_CLASS', 'PART_NAME_TO_CLASS']
