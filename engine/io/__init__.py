"""Files and devices both renderers read and write: images, audio, video, faces, bundled data."""
