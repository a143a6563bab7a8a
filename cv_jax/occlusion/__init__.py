"""Occlusion maps: a unit's activation for every position of a sliding occluder (paper §2.3).

    from cv_jax import models, occlusion
    model = models.load("googlenet_bvlc", "bvlc_googlenet_blobs.npz")
    res = occlusion.occlusion_maps(model, image, "mixed4a_pre_relu", [257, 486])
    res.maps.shape            # (68, 68, 2): rows x cols of occluder starts, one map per unit
    (rmin, cmin), (rmax, cmax) = occlusion.extreme_positions(res.maps[..., 0])

Conventions (occluder starts, fills, position order, ties, the paper's extra base entry):
docs/occlusion.md.

Layout: `occluder` (size, grid, fills), `blur` (OpenCV-exact Gaussian blur), `maps` (the compiled
program, `occlusion_maps`), `incremental` (its exact dirty-window forward pass), `result`,
`cost` (chunk sizes, FLOPs), `batch` (many images across `jax.distributed` processes), `sharp_window` (`blur_reference`), `query` (loading the image).

All positions are evaluated by one jit-compiled program per (model, layer, image size, occluder,
chunk, fill kind): positions are processed in chunks of `chunk` occluded copies (vmapped mask
construction + one batched forward pass truncated at the layer), chunks run in a `lax.map`.
All channels of the layer are computed at once, so asking for many units of one layer is free.
"""

from cv_jax.occlusion.batch import occlusion_maps_batch
from cv_jax.occlusion.blur import gaussian_blur, gaussian_kernel
from cv_jax.occlusion.cost import default_chunk, forward_flops
from cv_jax.occlusion.maps import occlusion_maps
from cv_jax.occlusion.occluder import (PAPER_OCCLUDER_SIZES, occlude, occluder_size,
                                       occluder_starts, patch_means)
from cv_jax.occlusion.query import load_query
from cv_jax.occlusion.result import OcclusionResult, extreme_positions
from cv_jax.occlusion.sharp_window import blur_reference

__all__ = ["PAPER_OCCLUDER_SIZES", "OcclusionResult", "occlusion_maps", "occlusion_maps_batch", "occlude",
           "extreme_positions", "blur_reference", "gaussian_kernel", "gaussian_blur", "patch_means",
           "occluder_starts", "occluder_size", "forward_flops", "default_chunk", "load_query"]
