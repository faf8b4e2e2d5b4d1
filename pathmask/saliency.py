"""Path-mask's saliency maps under common/'s one signature (registered on import; declared under the
icv.saliency_methods entry points in pyproject.toml)."""
