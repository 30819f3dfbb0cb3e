"""The pixel renderer: the MoEE U-Net (diffusers) on a face crop."""
