"""hybrid: a dermoscopy CNN, distilled into readable surrogates and explained twice."""

__version__ = "0.1.0"
