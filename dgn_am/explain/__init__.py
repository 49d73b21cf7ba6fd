"""Explaining a given image, and views of a data set through a network. See docs/explain.md.

    from dgn_am.explain import guided_backprop, excitation_backprop, top_k_patches
    attr = guided_backprop(model, x, "fc8:3")                   # x (B, C, H, W) in [0, 1] -> (B, C, H, W)
    p = excitation_backprop(model, x, "fc8:3", stop_layer="conv3")  # (B, 96, 7, 7), sums to 1 per image
    r = unit_invariance(model, Unit("fc8", 3), x[0], InvarianceConfig(smooth=10.0))  # Hessian eigenpairs, paths

Functions return tensors, arrays or figures; none prints or writes files (the `dgn-am explain` and
`dgn-am dataset-views` commands do that).
"""

from dgn_am.explain.dataset_views import (Patches, TopK, embed_2d, first_conv, first_layer_filters, layer_features,
                                          layer_outputs, nearest_neighbours, top_k_images, top_k_patches,
                                          unit_activations)
from dgn_am.explain.excitation import contrastive_excitation_backprop, excitation_backprop, excitation_maps
from dgn_am.explain.gradients import gradient, gradient_x_input, saliency
from dgn_am.explain.hessian import Curvature, eigenpairs, full_hessian
from dgn_am.explain.invariance import (FlatHessianWarning, Invariance, InvarianceConfig, invariances, smoothed,
                                       unit_invariance)
from dgn_am.explain.maps import filter_tiles, heatmap, overlay, reduce_channels, resize_map
from dgn_am.explain.occlusion import occlusion
from dgn_am.explain.plots import plot_embedding
from dgn_am.explain.receptive_field import ReceptiveField, receptive_field
from dgn_am.explain.registry import METHODS, display_map, explain
from dgn_am.explain.relu_rules import deconvnet, guided_backprop, relu_rule

__all__ = [
    "Curvature", "FlatHessianWarning", "Invariance", "InvarianceConfig", "METHODS", "Patches", "ReceptiveField",
    "TopK", "eigenpairs", "full_hessian", "invariances", "smoothed", "unit_invariance",
    "contrastive_excitation_backprop", "deconvnet", "display_map", "embed_2d", "excitation_backprop",
    "excitation_maps", "explain", "filter_tiles", "first_conv", "first_layer_filters", "gradient",
    "gradient_x_input", "guided_backprop", "heatmap", "layer_features", "layer_outputs", "nearest_neighbours",
    "occlusion", "overlay", "plot_embedding", "receptive_field", "reduce_channels", "relu_rule", "resize_map",
    "saliency", "top_k_images", "top_k_patches", "unit_activations",
]
