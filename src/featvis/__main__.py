"""``python -m featvis ...`` runs the ``featvis`` command (see ``featvis.cli``).

Example:
    >>> import subprocess, sys
    >>> subprocess.run([sys.executable, "-m", "featvis", "--version"], capture_output=True, text=True).stdout
    'featvis 0.1.0\\n'
"""

from __future__ import annotations

import sys

from featvis.cli import main

if __name__ == "__main__":
    sys.exit(main())
