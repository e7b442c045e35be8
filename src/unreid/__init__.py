"""unreid: unsupervised person re-identification by clustering and contrastive memories."""

__version__ = "0.1.0"
