"""Occlusion maps: a unit's activation for every position of a sliding occluder (paper §2.3).

    from cv_jax import models, occlusion
    model = models.load("googlenet_bvlc", "bvlc_googlenet_blobs.npz")
    res = occlusion.occlusion_maps(model, image, "mixed4a_pre_relu", [257, 486])
    res.maps.shape            # (68, 68, 2): rows x cols of occluder starts, one map per unit
    (rmin, cmin), (rmax, cmax) = occlusion.extreme_positions(res.maps[..., 0])

Conventions (Zimmermann et al. 2021, `occlusion_utils.py` and notebooks 2-3):

* Occluder starts are 0, stride, 2*stride, ... while start + size <= H (224 px, 90 px, stride 2:
  68 starts per axis, 4,624 positions). The occluded region is rows [r, r+size) x cols [c, c+size);
  the first image axis is the row. Position index = row-major (row outer, column inner).
* Fill "mean": every channel of the square is set to the mean of that channel over the pixels it
  covers, computed on the un-occluded image. Also: a constant colour, "blur" (the pixels of a
  Gaussian-blurred copy) or any (H, W, 3) array to copy the region from.
* The activation of a unit is the spatial mean of its channel in the requested layer (the paper
  uses the pre-ReLU block concat, `mixedXX_pre_relu`, which `Unit.parse("mixed4a/3x3:10")` gives).
* The paper's saved arrays have a 4,625th entry (a padding copy of the un-occluded image from its
  last forward batch, used as the "base"). It is not reproduced: `maps` holds exactly the
  positions and `base` the un-occluded activations.
* argmin/argmax ties go to the first row-major index (numpy's rule).

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
