"""Tooling for the course "From probability to loss functions".

One module per verb an instructor knows: ``build`` (the site), ``release``
(student notebooks), ``grade`` (trusted autograding), ``sandbox`` (where
student code runs) and ``report`` (what the grades say).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
