"""Helper package that lives inside the flow folder."""
