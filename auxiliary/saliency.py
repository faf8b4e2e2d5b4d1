"""SSAL's per-branch CAMs under common/'s one signature (registered on import; declared under the
icv.saliency_methods entry points in pyproject.toml)."""
