"""Typed shapes of everything qcflow reads or sends: CCC, SCA, FC events."""
