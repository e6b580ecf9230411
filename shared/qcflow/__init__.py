"""qcflow: every Cloud Contact Center recording quality-inspected by SCA, every result in your OSS.

The package is the Function Compute layer. Keep this module import-light: the functions'
cold start pays for everything imported here, so submodules are imported where used.
"""

__version__ = "0.1.0"
