"""From embeddings to labels: Poincaré k-means, the hierarchy of levels, and metrics."""

from napari_hypseg.segmentation.embed import EmbeddingCancelled, embed, embed_patches
from napari_hypseg.segmentation.hierarchy import Hierarchy, build_hierarchy
from napari_hypseg.segmentation.kmeans import (
    KMeansResult,
    assign_clusters,
    frechet_mean,
    pairwise_distance,
    poincare_kmeans,
)
from napari_hypseg.segmentation.metrics import DiceResult, dice_scores, hausdorff95
from napari_hypseg.segmentation.pipeline import Segmentation, segment

__all__ = [
    "DiceResult",
    "EmbeddingCancelled",
    "Segmentation",
    "embed",
    "embed_patches",
    "segment",
    "Hierarchy",
    "KMeansResult",
    "assign_clusters",
    "build_hierarchy",
    "dice_scores",
    "frechet_mean",
    "hausdorff95",
    "pairwise_distance",
    "poincare_kmeans",
]
