"""The portrait renderer (default): motion model on 68 landmarks, carried onto the full-resolution portrait by a mesh warp."""
