"""Label-space unification: taxonomies → disjoint union → prompt embeddings → similarity (Parquet).

The pipeline reads top to bottom, one module a step: ``readers`` / ``builtin`` → ``union`` → ``prompts``
→ ``encoders`` + ``cache`` → ``embed`` → ``similarity`` → ``outputs``. ``build`` runs it; the output
directory (``outputs.LabelSpaceOutput``) is all the detector ever reads about label semantics.
"""
from .build import DatasetFile, build_labelspace, load_taxonomies
from .encoders import ClipEncoder, MiniLMEncoder, build_encoder
from .io.errors import ScaledetError
from .outputs import LabelSpaceOutput
from .similarity import SimilarityMatrix

__all__ = [
    "DatasetFile", "build_labelspace", "load_taxonomies", "ClipEncoder", "MiniLMEncoder", "build_encoder",
    "ScaledetError", "LabelSpaceOutput", "SimilarityMatrix",
]
