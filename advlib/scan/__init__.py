"""``advlib scan``: find (and correct) adversarial images in files and folders.

- :mod:`.shipped`: the detectors shipped inside the package, what their metadata states (no torch),
  and :func:`~advlib.scan.shipped.ship_detector` (the all-38 paper detector, ``--detector paper``);
- :mod:`.files`: the files a scan reads (folders walked, what is left out counted, the report and
  copies excluded), shards by path hash, output checks;
- :mod:`.report`: the report, CSV or JSON (columns, resume, atomic rewrite, closing summary);
- :mod:`.scanner`: :class:`~advlib.scan.scanner.Scanner` (read, detect, correct), the threshold
  (``--threshold``, ``--fpr``) and :func:`~advlib.scan.scanner.scan`;
- :mod:`.merge`: shard reports into one (``--merge``), checked;
- :mod:`.jobs`: the shards as submitit jobs (``--executor slurm|local``);
- :mod:`.plot`: the score histogram (``--plot``);
- :mod:`.help`, :mod:`.app`: the command line (``advlib scan --help``);
- :mod:`.measure`: its speed with threads and jobs (``python -m advlib.scan.measure``, BENCHMARKS.md).
"""


class UsageError(ValueError):
    """Bad arguments or missing inputs of a command: exit status 2, the message names the culprit."""
