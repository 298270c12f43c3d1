"""Plugins: backends, monitoring and lifecycle extensions loaded from ``.nuvom_plugins.toml``
and the ``nuvom.plugins`` entry-point group. Nothing here is imported until a plugin is needed.
"""
