"""Pure-numeric XAS science: readers, normalisation, alignment, broadening (numpy/scipy only; no database)."""
