"""Compute kernels of hsjax, one folder per op (``kernels.rasterize``: the Gaussian rasteriser).

The kernels take plain arrays and are usable without the rest of hsjax.
"""
