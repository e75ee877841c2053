"""Detection data, as detectron2's ``data/`` package: dataset specs and record checks (``records``), the
memory-mapped annotation index (``index``), image decoding (``images``), augmentation (``transforms``),
datasets (``dataset``) and the multi-worker loader driven by the deterministic batch sampler (``loader``)."""
from .dataset import CocoDetectionDataset
from .images import read_image, read_image_array, read_image_uint8, to_float
from .records import (BOX_TOLERANCE_PX, DatasetSpec, check_annotation, check_category, check_image,
                      image_file_name)
from .transforms import InputConfig

__all__ = ["BOX_TOLERANCE_PX", "CocoDetectionDataset", "DatasetSpec", "InputConfig", "check_annotation",
           "check_category", "check_image", "image_file_name", "read_image", "read_image_array",
           "read_image_uint8", "to_float"]
