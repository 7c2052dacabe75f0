"""What counts as blank text, shared by the API's schema and the services' checks."""

BLANK = " \t\n\v\f\r"
"""ASCII white space. A prompt or feedback made only of these is blank. Regex engines disagree on
which other characters ``\\s`` covers, so the API contract names these exactly."""


def is_blank(text: str) -> bool:
    return not text.strip(BLANK)
