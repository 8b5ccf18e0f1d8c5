"""``advlib scan``: find (and correct) adversarial images in files and folders.

- :mod:`.shipped`: the detectors shipped inside the package and what their metadata states (no torch);
- :mod:`.files`: the files a scan reads (folders walked, the report and copies excluded);
- :mod:`.report`: the CSV report (columns, resume, atomic rewrite, closing summary);
- :mod:`.scanner`: :class:`~advlib.scan.scanner.Scanner` (read, detect, correct) and :func:`~advlib.scan.scanner.scan`;
- :mod:`.app`: the command line (``advlib scan --help``).
"""


class UsageError(ValueError):
    """Bad arguments or missing inputs of a command: exit status 2, the message names the culprit."""
