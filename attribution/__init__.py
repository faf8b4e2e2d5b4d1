"""Attribution peers of documents 001 (meaningful / extremal perturbations, pointing game) and 002
(Opti-CAM, the CAM family, Fake-CAM, AD / AI / AG, insertion / deletion), and one benchmark that
scores every saliency method of the registry (``common.saliency``) with common/'s metrics."""
